"""Rollout drift screen: latent error, latent statistics and decoded PSNR against copy-last-frame per
horizon, for a checkpoint and sampling variants (16 test clips, 8 prompt frames, 64 generated).

    python docs/results/follow_actions/rollout_drift.py RUN LATENT_CACHE THREADS ["context_level=0.3" ...]
"""

import dataclasses
import sys

import numpy as np
import torch

from farsight.latents import LatentCache
from farsight.sampling import rollout as R
from farsight.sampling.config import model_sampling
from farsight.world_model import load_world_model

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
wm = load_world_model(sys.argv[1])
cache = LatentCache(sys.argv[2])
P, H = 8, 64
clips = cache.clips(P + H, 0, 1, split="test")
idx = np.linspace(0, len(clips) - 1, 16).astype(int)
items = [clips[int(i)] for i in idx]
lat = torch.stack([it["latents"] for it in items]).float()
act = torch.stack([it["actions"] for it in items]).long()
print("clips", lat.shape, "latent std", lat.std().item())
m = wm.dynamics
from farsight.models.dynamics import actions_into_frames

ain = actions_into_frames(act, m.start_action) if hasattr(m, "start_action") else None
base = model_sampling(wm)
variants = [("base", {})] + [(a, eval("dict(" + a + ")")) for a in sys.argv[4:]]
for name, over in variants:
    cfg = dataclasses.replace(base, **over)
    g = torch.Generator().manual_seed(0)
    st = R.new_state(m, g)
    pol = cfg.policy(wm.objective.context_level)
    R.prime(m, st, lat[:, :P], ain[:, :P], pol, wm.objective.schedule)
    x = R.generate(
        m,
        st,
        ain[:, P : P + H],
        cfg,
        prediction=wm.objective.prediction,
        schedule=wm.objective.schedule,
        context_level=wm.objective.context_level,
    )
    truth = lat[:, P : P + H]
    copy = lat[:, P - 1 : P]
    mse = ((x - truth) ** 2).mean(dim=(0, 2, 3, 4))
    cmse = ((copy - truth) ** 2).mean(dim=(0, 2, 3, 4))
    std = x.std(dim=(2, 3, 4)).mean(0)
    hs = [0, 3, 7, 15, 31, 63]
    print(
        name,
        "mse",
        [round(mse[h].item(), 3) for h in hs],
        "copy",
        [round(cmse[h].item(), 3) for h in hs],
        "std",
        [round(std[h].item(), 2) for h in hs],
        flush=True,
    )
    ae = wm.autoencoder

    def dec(v):
        return ae.decode_normalized(v).clamp(-1, 1)

    def psnr(a, b):
        return (10 * torch.log10(4 / ((a - b) ** 2).mean(dim=(1, 2, 3)))).mean().item()

    with torch.no_grad():
        row = []
        for h in hs:
            ref = dec(truth[:, h])
            row.append((round(psnr(dec(x[:, h]), ref), 1), round(psnr(dec(copy[:, 0]), ref), 1)))
        print("   pixel psnr (model, copy)", row)
        chm = x.mean(dim=(3, 4)).mean(0)  # (H, C)
        tm = truth.mean(dim=(3, 4)).mean(0)
        print(
            "   ch means h=63",
            [round(v, 2) for v in chm[63].tolist()],
            "truth",
            [round(v, 2) for v in tm[63].tolist()],
        )
        hf = lambda v: (v[..., 1:, :] - v[..., :-1, :]).pow(2).mean().item()
        print(
            "   hf energy h=0,15,63",
            [round(hf(x[:, h]), 3) for h in (0, 15, 63)],
            "truth",
            round(hf(truth), 3),
        )
        if name == "base":
            import imageio.v3 as iio

            frames = torch.cat([dec(x[:4, h]) for h in (0, 15, 31, 63)], dim=-1)
            img = (
                ((frames.permute(0, 2, 3, 1).reshape(-1, frames.shape[-1], 3) + 1) * 127.5)
                .byte()
                .numpy()
            )
            iio.imwrite(
                ""
                + sys.argv[0].replace("drift.py", "")
                + "strip_"
                + sys.argv[1].strip("/").split("/")[-2]
                + ".png",
                img,
            )
    if name == "base":
        with torch.no_grad():
            xm = x[:, 63]
            tr = truth[:, 63]
            print(
                "   per-ch std model",
                [round(v, 2) for v in xm.std(dim=(0, 2, 3)).tolist()],
                "truth",
                [round(v, 2) for v in tr.std(dim=(0, 2, 3)).tolist()],
            )
            # per-sample per-channel renorm to truth-wide stats
            mu_t = truth.mean(dim=(0, 1, 3, 4), keepdim=True)[:, 0]
            sd_t = truth.std(dim=(0, 1, 3, 4), keepdim=True)[:, 0]
            mu_x = xm.mean(dim=(2, 3), keepdim=True)
            sd_x = xm.std(dim=(2, 3), keepdim=True)
            fixed = (xm - mu_x) / sd_x * sd_t + mu_t
            ref = dec(tr)
            print(
                "   renorm psnr",
                round(psnr(dec(fixed), ref), 2),
                "orig",
                round(psnr(dec(xm), ref), 2),
            )
            # which channel breaks it: replace each channel with its spatial mean
            for c in range(8):
                y = xm.clone()
                y[:, c] = tr[:, c]
                print("   ch", c, "from truth ->", round(psnr(dec(y), ref), 2))
