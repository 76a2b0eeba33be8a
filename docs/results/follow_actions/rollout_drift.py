"""Rollout drift screen: latent error, latent statistics and decoded PSNR against
copy-last-frame per horizon, for a checkpoint and sampling variants (16 test clips, 8 prompt
frames, 64 generated).

    python docs/results/follow_actions/rollout_drift.py RUN LATENT_CACHE THREADS \
        ["context_level=0.3" "steps=8,context_level=0.3" ...]

Each variant is comma-separated ``field=value`` edits (Python literals) of the model's sampling
config. The base variant's first 4 clips at h = 1, 16, 32, 64 are written to
``rollout_strip_<run folder>.png`` beside this script.
"""

import ast
import dataclasses
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from farsight.latents import LatentCache
from farsight.models.dynamics import actions_into_frames
from farsight.sampling import rollout as R
from farsight.sampling.config import model_sampling
from farsight.world_model import load_world_model

P, H = 8, 64
HS = [0, 3, 7, 15, 31, 63]


def parse_variant(text: str) -> dict:
    """``"steps=8,context_level=0.3"`` -> ``{"steps": 8, "context_level": 0.3}``."""
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        out[key.strip()] = ast.literal_eval(value.strip())
    return out


def main() -> None:
    run = sys.argv[1]
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    wm = load_world_model(run)
    clips = LatentCache(sys.argv[2]).clips(P + H, 0, 1, split="test")
    idx = np.linspace(0, len(clips) - 1, 16).astype(int)
    items = [clips[int(i)] for i in idx]
    lat = torch.stack([it["latents"] for it in items]).float()
    act = torch.stack([it["actions"] for it in items]).long()
    print("clips", lat.shape, "latent std", lat.std().item())
    m = wm.dynamics
    ain = actions_into_frames(act, m.start_action)
    base = model_sampling(wm)
    ae = wm.autoencoder

    def dec(v):
        return ae.decode_normalized(v).clamp(-1, 1)

    def psnr(a, b, digits=2):
        value = (10 * torch.log10(4 / ((a - b) ** 2).mean(dim=(1, 2, 3)))).mean().item()
        return round(value, digits)

    def hf(v):
        return round((v[..., 1:, :] - v[..., :-1, :]).pow(2).mean().item(), 3)

    variants = [("base", {})] + [(a, parse_variant(a)) for a in sys.argv[4:]]
    for name, over in variants:
        cfg = dataclasses.replace(base, **over)
        st = R.new_state(m, torch.Generator().manual_seed(0))
        R.prime(
            m,
            st,
            lat[:, :P],
            ain[:, :P],
            cfg.policy(wm.objective.context_level),
            wm.objective.schedule,
        )
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
        print(
            name,
            "mse",
            [round(mse[h].item(), 3) for h in HS],
            "copy",
            [round(cmse[h].item(), 3) for h in HS],
            "std",
            [round(std[h].item(), 2) for h in HS],
            flush=True,
        )
        with torch.no_grad():
            row = []
            for h in HS:
                ref = dec(truth[:, h])
                row.append((psnr(dec(x[:, h]), ref, 1), psnr(dec(copy[:, 0]), ref, 1)))
            print("   pixel psnr (model, copy)", row)
            chm = x.mean(dim=(3, 4)).mean(0)  # (H, C)
            tm = truth.mean(dim=(3, 4)).mean(0)
            print(
                "   ch means h=63",
                [round(v, 2) for v in chm[63].tolist()],
                "truth",
                [round(v, 2) for v in tm[63].tolist()],
            )
            print("   hf energy h=0,15,63", [hf(x[:, h]) for h in (0, 15, 63)], "truth", hf(truth))
            if name != "base":
                continue
            frames = torch.cat([dec(x[:4, h]) for h in (0, 15, 31, 63)], dim=-1)
            img = frames.permute(0, 2, 3, 1).reshape(-1, frames.shape[-1], 3)
            folder = Path(run) if Path(run).is_dir() else Path(run).parent
            out = Path(__file__).parent / f"rollout_strip_{folder.resolve().name}.png"
            iio.imwrite(out, ((img + 1) * 127.5).byte().numpy())
            xm, tr = x[:, 63], truth[:, 63]
            print(
                "   per-ch std model",
                [round(v, 2) for v in xm.std(dim=(0, 2, 3)).tolist()],
                "truth",
                [round(v, 2) for v in tr.std(dim=(0, 2, 3)).tolist()],
            )
            # Each sample's channels rescaled to the truth's mean and std over all clips.
            mu_t = truth.mean(dim=(0, 1, 3, 4), keepdim=True)[:, 0]
            sd_t = truth.std(dim=(0, 1, 3, 4), keepdim=True)[:, 0]
            mu_x = xm.mean(dim=(2, 3), keepdim=True)
            sd_x = xm.std(dim=(2, 3), keepdim=True)
            fixed = (xm - mu_x) / sd_x * sd_t + mu_t
            ref = dec(tr)
            print("   renorm psnr", psnr(dec(fixed), ref), "orig", psnr(dec(xm), ref))
            # Which channel breaks it: each channel in turn taken from the truth.
            for c in range(xm.shape[1]):
                y = xm.clone()
                y[:, c] = tr[:, c]
                print("   ch", c, "from truth ->", psnr(dec(y), ref))


if __name__ == "__main__":
    main()
