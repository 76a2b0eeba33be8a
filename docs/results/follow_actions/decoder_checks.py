"""Decoder checks: PSNR of decoded latents under noise, averaging and shrinking, against the
decoded true latents (16 test clips).

    python docs/results/follow_actions/decoder_checks.py RUN LATENT_CACHE
"""
import sys, torch, numpy as np
from farsight.world_model import load_world_model
from farsight.latents import LatentCache
torch.set_num_threads(2)
wm = load_world_model(sys.argv[1]); ae = wm.autoencoder
cache = LatentCache(sys.argv[2])
clips = cache.clips(40, 0, 1, split="test")
idx = np.linspace(0, len(clips) - 1, 16).astype(int)
lat = torch.stack([clips[int(i)]["latents"] for i in idx]).float()
z = lat[:, 0]; z2 = lat[:, 39]
def dec(v): return ae.decode_normalized(v).clamp(-1, 1)
def psnr(a, b): return (10 * torch.log10(4 / ((a - b) ** 2).mean(dim=(1, 2, 3)))).mean().item()
with torch.no_grad():
    ref = dec(z)
    print("same", psnr(dec(z), ref))
    for s in (0.1, 0.2, 0.3, 0.5):
        print("noise", s, round(psnr(dec(z + s * torch.randn_like(z)), ref), 2), "scaled-noise-vs-copy z2", round(psnr(dec(z2), ref), 2))
    print("mean of two", round(psnr(dec(0.5 * (z + z2)), ref), 2), "copy z2", round(psnr(dec(z2), ref), 2),
          "pixel mean", round(psnr(0.5 * (dec(z) + dec(z2)), ref), 2))
    print("shrink 0.8", round(psnr(dec(0.8 * z), ref), 2))
    import torch.nn.functional as F
    zb = F.avg_pool2d(z, 3, 1, 1)
    print("blur3", round(psnr(dec(zb), ref), 2), "pixel blur of decode", round(psnr(F.avg_pool2d(ref, 9, 1, 4), ref), 2))
