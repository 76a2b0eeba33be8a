"""Decoder checks: PSNR of decoded latents under noise, averaging and shrinking, against the
decoded true latents (16 test clips).

    python docs/results/follow_actions/decoder_checks.py RUN LATENT_CACHE
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F

from farsight.latents import LatentCache
from farsight.world_model import load_world_model


def main() -> None:
    torch.set_num_threads(2)
    ae = load_world_model(sys.argv[1]).autoencoder
    clips = LatentCache(sys.argv[2]).clips(40, 0, 1, split="test")
    idx = np.linspace(0, len(clips) - 1, 16).astype(int)
    lat = torch.stack([clips[int(i)]["latents"] for i in idx]).float()
    z, z2 = lat[:, 0], lat[:, 39]  # a frame and one 39 steps later

    def dec(v):
        return ae.decode_normalized(v).clamp(-1, 1)

    def psnr(a, b):
        return round((10 * torch.log10(4 / ((a - b) ** 2).mean(dim=(1, 2, 3)))).mean().item(), 2)

    with torch.no_grad():
        ref = dec(z)
        print("same", psnr(dec(z), ref))
        for s in (0.1, 0.2, 0.3, 0.5):
            noisy = psnr(dec(z + s * torch.randn_like(z)), ref)
            print("noise", s, noisy, "scaled-noise-vs-copy z2", psnr(dec(z2), ref))
        print(
            "mean of two",
            psnr(dec(0.5 * (z + z2)), ref),
            "copy z2",
            psnr(dec(z2), ref),
            "pixel mean",
            psnr(0.5 * (dec(z) + dec(z2)), ref),
        )
        print("shrink 0.8", psnr(dec(0.8 * z), ref))
        blurred = dec(F.avg_pool2d(z, 3, 1, 1))
        pixel_blur = F.avg_pool2d(ref, 9, 1, 4)
        print("blur3", psnr(blurred, ref), "pixel blur of decode", psnr(pixel_blur, ref))


if __name__ == "__main__":
    main()
