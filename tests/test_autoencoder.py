"""Autoencoder and FSQ: shapes, FSQ round trips, low-res tokens, overfitting one batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from farsight.autoencoder_config import AutoencoderConfig, AutoencoderLossConfig
from farsight.config import ConfigError
from farsight.metrics import image_grid, image_metrics
from farsight.models.autoencoder import (
    Autoencoder,
    LatentFade,
    fade_latents,
    frames_to_images,
    images_to_frames,
)
from farsight.models.fsq import FSQ
from farsight.objectives.autoencoder import ReconstructionObjective, worst_pixels

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = AutoencoderConfig(
    latent_channels=4,
    width=8,
    channel_mult=(1, 2),
    blocks=1,
    attention=True,
    norm_groups=4,
    attention_heads=2,
)


@pytest.mark.parametrize("factor", [4, 8])
@pytest.mark.parametrize("kind", ["continuous", "fsq"])
@pytest.mark.parametrize("patch,shortcut", [(1, False), (2, True), (4, False)])
def test_shapes(factor, kind, patch, shortcut):
    cfg = dataclasses.replace(
        TINY, factor=factor, kind=kind, patch=patch, shortcut=shortcut, fsq_levels=(8, 5, 5)
    )
    model = Autoencoder(cfg)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    out = model(images)
    channels = 3 if kind == "fsq" else 4
    assert model.latent_shape(64, 64) == (channels, 64 // factor, 64 // factor)
    assert out.mean.shape == (2, channels, 64 // factor, 64 // factor)
    assert out.latent.shape == out.mean.shape
    assert out.recon.shape == images.shape
    if kind == "fsq":
        indices = model.fsq.tokens(out.mean)
        assert indices.shape == (2, 64 // factor, 64 // factor)
        assert model.decode_indices(indices).shape == images.shape
        assert torch.equal(model.fsq.indices_to_codes(indices), out.latent)


def test_variational_applies_eps_from_the_objective():
    model = Autoencoder(dataclasses.replace(TINY, variational=True)).eval()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    plain = model(images)
    assert plain.logvar is not None and torch.equal(plain.latent, plain.mean)
    eps = torch.randn_like(plain.mean)
    noisy = model(images, eps)
    torch.testing.assert_close(noisy.latent, plain.mean + torch.exp(0.5 * plain.logvar) * eps)


def test_bad_configs_name_the_key():
    with pytest.raises(ConfigError, match="model.kind"):
        Autoencoder(dataclasses.replace(TINY, kind="vq"))
    with pytest.raises(ConfigError, match="model.factor"):
        Autoencoder(dataclasses.replace(TINY, factor=3))
    with pytest.raises(ConfigError, match="variational"):
        Autoencoder(dataclasses.replace(TINY, kind="fsq", variational=True))


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (7, 5, 5, 5, 5), (2, 3), (16, 16)])
def test_fsq_indices_round_trip(levels):
    fsq = FSQ(levels)
    every = torch.arange(fsq.codebook_size).view(1, -1, 1)  # (B, h, w) = (1, K, 1)
    codes = fsq.indices_to_codes(every)
    assert codes.shape == (1, len(levels), fsq.codebook_size, 1)
    assert codes.min() >= -1 and codes.max() <= 1
    assert torch.equal(fsq.codes_to_indices(codes), every)
    # Codes of distinct indices are distinct, and quantizing a code is the identity.
    assert len({tuple(c) for c in codes[0, :, :, 0].T.tolist()}) == fsq.codebook_size
    # A preimage of every code (the bound inverted) quantizes back to exactly that code.
    assert torch.equal(fsq(fsq.preimage(codes)), codes)
    assert torch.isfinite(fsq.preimage(codes)).all()


def test_fsq_random_latents_and_straight_through_gradient():
    fsq = FSQ((8, 5, 5, 5))
    z = (torch.randn(4, 4, 6, 6) * 3).requires_grad_()
    codes = fsq(z)
    indices = fsq.codes_to_indices(codes)
    assert indices.min() >= 0 and indices.max() < 1000
    assert torch.equal(fsq.indices_to_codes(indices), codes)
    codes.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_low_resolution_tokens_are_fsq_of_the_pooled_latent():
    fsq = FSQ((8, 5, 5, 5))
    z = torch.randn(2, 4, 16, 16)
    coarse = fsq.tokens_pooled(z, 4)
    assert coarse.shape == (2, 4, 4)
    pooled = torch.nn.functional.avg_pool2d(z, 4)
    assert torch.equal(coarse, fsq.codes_to_indices(fsq(pooled)))
    assert torch.equal(fsq.tokens_pooled(z, 1), fsq.tokens(z))


def test_frame_conversions_round_trip():
    frames = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    images = frames_to_images(frames)
    assert images.shape == (3, 3, 8, 8) and images.min() >= -1 and images.max() <= 1
    assert torch.equal(images_to_frames(images), frames)


def test_metrics():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    assert image_metrics(a, a)["psnr"] == np.inf and image_metrics(a, a)["ssim"] == 1.0
    noisy = np.clip(a.astype(int) + rng.integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    m = image_metrics(a, noisy)
    assert 25 < m["psnr"] < 40 and 0 < m["ssim"] < 1
    assert m["psnr_r4"] > m["psnr"]  # pooling averages the independent noise away
    assert image_grid([a, noisy], scale=2, gap=1).shape == (2 * 33, 2 * 67, 3)


@pytest.mark.parametrize("kind", ["continuous", "fsq"])
def test_overfit_one_batch(kind):
    """A tiny model drives one batch's loss well down: the model and objective can learn."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, kind=kind, attention=False, width=16, fsq_levels=(8, 8, 8, 8))
    model = Autoencoder(cfg)
    # Smooth blobs (learnable at factor 4 by a tiny model) rather than white noise.
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centres = torch.rand(4, 2) * 16
    blobs = torch.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 20)
    frames = (torch.stack([blobs, blobs.flip(1), 1 - blobs], -1) * 255).to(torch.uint8)
    objective = ReconstructionObjective(AutoencoderLossConfig(l1=1.0, l2=1.0, gradient=0.5))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss, logs = objective(model, {"frames": frames})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])
    assert logs["psnr"] > 24


@pytest.mark.parametrize(
    "model_changes,loss_changes,logged",
    [
        ({"variational": True}, {"kl": 1e-6}, "kl"),
        ({}, {"latent_noise": 0.1, "latent_l2": 1e-3}, "latent_l2"),
        ({"kind": "fsq", "fsq_levels": (5, 5, 5)}, {"gradient": 1.0}, "gradient"),
    ],
)
def test_objective_variants(model_changes, loss_changes, logged):
    torch.manual_seed(0)
    model = Autoencoder(dataclasses.replace(TINY, **model_changes))
    objective = ReconstructionObjective(AutoencoderLossConfig(**loss_changes))
    frames = torch.randint(0, 256, (2, 1, 16, 16, 3), dtype=torch.uint8)  # clip-loader layout
    loss, logs = objective(model, {"frames": frames})
    assert torch.isfinite(loss) and logged in logs and "psnr" in logs
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_fade_latents_shrinks_only_along_its_directions():
    torch.manual_seed(0)
    z = torch.randn(3, 4, 5, 7)  # odd grid: the pooled copy must still fit
    basis = torch.linalg.qr(torch.randn(3, 4, 2))[0]
    untouched = LatentFade(basis, torch.ones(3, 2), torch.zeros(3))
    torch.testing.assert_close(fade_latents(z, untouched), z)
    gone = fade_latents(z, LatentFade(basis, torch.zeros(3, 2), torch.zeros(3)))
    centre = z.mean(dim=(2, 3), keepdim=True)
    along = torch.einsum("bchw,bck->bkhw", gone - centre, basis)
    torch.testing.assert_close(along, torch.zeros_like(along), atol=1e-5, rtol=0)
    # What lies across the directions is kept, and so is each latent's spatial mean.
    across = (z - centre) - torch.einsum(
        "bkhw,bck->bchw", torch.einsum("bchw,bck->bkhw", z - centre, basis), basis
    )
    torch.testing.assert_close(gone - centre, across, atol=1e-5, rtol=0)
    torch.testing.assert_close(gone.mean(dim=(2, 3)), z.mean(dim=(2, 3)))
    full = torch.eye(4).expand(3, 4, 4)
    flat = fade_latents(z, LatentFade(full, torch.zeros(3, 4), torch.zeros(3)))
    torch.testing.assert_close(flat, centre.expand_as(z), atol=1e-5, rtol=0)
    pooled = fade_latents(z, LatentFade(basis, torch.ones(3, 2), torch.ones(3)))
    assert pooled[..., 0, 0].equal(pooled[..., 1, 1]) and pooled[..., 4, 6].equal(z[..., 4, 6])


def test_latent_fade_reaches_the_decoder_of_a_share_of_the_batch():
    torch.manual_seed(0)
    model = Autoencoder(TINY)
    seen = {}
    model.register_forward_hook(lambda m, args, out: seen.update(args=args, out=out))
    frames = torch.randint(0, 256, (64, 1, 16, 16, 3), dtype=torch.uint8)
    objective = ReconstructionObjective(AutoencoderLossConfig(latent_fade=0.5))
    loss, _ = objective(model, {"frames": frames})
    fade = seen["args"][2]
    faded = (fade.keep < 1).any(dim=1)
    assert 0.3 < faded.float().mean() < 0.7
    assert (fade.blur[~faded] == 0).all() and (fade.blur[faded] > 0).any()
    out = seen["out"]
    changed = (out.latent - out.mean).flatten(1).abs().amax(1) > 1e-6
    assert changed.equal(faded)
    loss.backward()
    assert all(p.grad is not None for p in model.decoder.parameters())
    fsq = Autoencoder(dataclasses.replace(TINY, kind="fsq", fsq_levels=(5, 5, 5)))
    with pytest.raises(ConfigError, match="latent_fade"):
        objective(fsq, {"frames": frames[:2]})
    with pytest.raises(ConfigError, match="latent_fade"):
        ReconstructionObjective(AutoencoderLossConfig(latent_fade=1.5))


def test_worst_pixels_averages_each_frames_worst_share():
    error = torch.zeros(2, 3, 4, 5)  # 20 pixels a frame
    error[0, 0, 1, 2] = 2.0  # one pixel of frame 0: 4 summed over colour
    error[0, 1, 1, 2] = 1.0  # same pixel: 4 + 1
    error[0, 2, 3, 4] = 1.0
    error[1, :, 0, 0] = 1.0  # frame 1: 3 at one pixel, 0.01 everywhere else
    error[1, 0, 1:] = 0.1
    # share 0.1 of 20 pixels: each frame's two worst; frame 0: (5 + 1) / 2, frame 1: (3 + 0.01) / 2
    assert worst_pixels(error, 0.1).item() == pytest.approx((3.0 + 1.505) / 2)
    assert worst_pixels(error, 1e-6).item() == pytest.approx((5.0 + 3.0) / 2)  # at least one
    assert worst_pixels(error, 1.0).item() == pytest.approx(error.pow(2).sum(1).mean().item())
    torch.manual_seed(0)
    model = Autoencoder(TINY)
    frames = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    loss, logs = ReconstructionObjective(AutoencoderLossConfig(worst=1.0))(
        model, {"frames": frames}
    )
    base, _ = ReconstructionObjective(AutoencoderLossConfig())(model, {"frames": frames})
    assert loss.item() == pytest.approx(base.item() + logs["worst"].item(), rel=1e-5)
    for bad in ({"worst_share": 0.0}, {"worst_share": 1.5}, {"worst": -1.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ReconstructionObjective(AutoencoderLossConfig(**bad))
