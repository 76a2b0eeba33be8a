"""Latent action model: shapes, quantization round trip, no way around the bottleneck, usage
entropy, NMI on known inputs, overfitting, and a tiny training run with its eval.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from farsight.config import ConfigError
from farsight.lam_config import LAMConfig
from farsight.latent_actions import (
    agreement,
    chance_nmi,
    contingency,
    normalized_mutual_information,
)
from farsight.models.lam import LatentActionModel
from farsight.objectives.lam import LAMObjective, code_usage

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(quantizer: str = "fsq", **kw) -> LatentActionModel:
    torch.manual_seed(0)
    cfg = LAMConfig(quantizer=quantizer, width=16, blocks=1, down=1, norm_groups=4, **kw)
    return LatentActionModel(cfg)


@pytest.mark.parametrize("quantizer", ["fsq", "vq"])
def test_shapes_and_round_trip(quantizer):
    lam = tiny(quantizer)
    x, y = torch.rand(5, 3, 32, 32) * 2 - 1, torch.rand(5, 3, 32, 32) * 2 - 1
    out = lam(x, y)
    dz = 3 if quantizer == "fsq" else 16
    assert out.pred.shape == x.shape
    assert out.pre.shape == out.code.shape == (5, dz)
    assert out.index.shape == (5,) and out.index.dtype == torch.int64
    assert int(out.index.min()) >= 0 and int(out.index.max()) < 8
    # index -> code -> index is the identity over the whole vocabulary
    every = torch.arange(8)
    assert torch.equal(lam.index_of(lam.code_of(every)), every)
    # the code the decoder saw is the code of the index
    torch.testing.assert_close(out.code, lam.code_of(out.index), atol=1e-6, rtol=0)
    assert torch.equal(lam.infer(x, y), out.index)


@pytest.mark.parametrize("quantizer", ["fsq", "vq"])
def test_decoder_sees_the_next_frame_only_through_the_action(quantizer):
    """The prediction equals decode(x_t, code of the index): no other path from x_{t+1}."""
    lam = tiny(quantizer).eval()
    x, y = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out = lam(x, y)
        again = lam.decode(x, lam.code_of(out.index))
    torch.testing.assert_close(out.pred, again, atol=1e-5, rtol=0)
    # and its gradient reaches x_{t+1} only through the (straight-through) code
    y.requires_grad_(True)
    pred = lam(x, y).pred
    (g,) = torch.autograd.grad(pred.sum(), y)
    assert torch.isfinite(g).all()


def test_config_errors():
    with pytest.raises(ConfigError, match="fsq_levels"):
        LAMConfig(num_codes=8, fsq_levels=(2, 2)).validate()
    with pytest.raises(ConfigError, match="quantizer"):
        LAMConfig(quantizer="rvq").validate()


def test_usage_entropy():
    uniform, perplexity = code_usage(torch.arange(8).repeat(4), 8)
    assert float(uniform) == pytest.approx(1.0) and float(perplexity) == pytest.approx(8.0)
    single, perplexity = code_usage(torch.full((32,), 3), 8)
    assert float(single) == pytest.approx(0.0) and float(perplexity) == pytest.approx(1.0)
    half, _ = code_usage(torch.tensor([0, 1] * 8), 4)
    assert float(half) == pytest.approx(0.5)


def test_nmi_on_known_inputs():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert normalized_mutual_information(a, a) == pytest.approx(1.0)
    assert normalized_mutual_information(a, (a + 1) % 3) == pytest.approx(1.0)  # renamed
    # independent: every (a, z) combination equally often
    a2, z2 = np.repeat(np.arange(3), 4), np.tile(np.arange(4), 3)
    assert normalized_mutual_information(a2, z2) == pytest.approx(0.0, abs=1e-12)
    # a hand-computed case (sklearn's normalized_mutual_info_score gives 0.3437...)
    h_a = math.log(2)
    h_z = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    h_az = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    expected = (h_a + h_z - h_az) / ((h_a + h_z) / 2)
    value = normalized_mutual_information(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]))
    assert value == pytest.approx(expected) and value == pytest.approx(0.34371, abs=1e-4)
    table = contingency(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]), 2, 8)
    m = agreement(table)
    assert m["accuracy"] == pytest.approx(0.75) and m["pairs"] == 4


def test_chance_nmi_is_what_independent_labels_score():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 9, 1500)
    independent = contingency(true, rng.integers(0, 8, 1500), 9, 8)
    chance = chance_nmi(independent)
    # finite samples give independent labels an NMI above 0; the null covers it
    assert 0 < chance["nmi_chance"] < chance["nmi_chance_p99"] < 0.05
    assert agreement(independent)["nmi"] < chance["nmi_chance_p99"]
    perfect = contingency(true, true % 8, 9, 8)
    assert agreement(perfect)["nmi"] > 0.9 > chance_nmi(perfect)["nmi_chance"] * 10


def shifted_pairs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random blocky frames and the frame rolled by one of 4 directions (the true action)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    x = coarse.repeat_interleave(4, 2).repeat_interleave(4, 3)
    actions = torch.arange(n) % 4
    shifts = [(0, 4), (0, -4), (4, 0), (-4, 0)]
    y = torch.stack([x[i].roll(shifts[int(a)], dims=(1, 2)) for i, a in enumerate(actions)])
    return x, y, actions


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def small_lam() -> LatentActionModel:
    torch.manual_seed(0)
    return LatentActionModel(
        LAMConfig(
            num_codes=4,
            fsq_levels=(2, 2),
            width=16,
            blocks=1,
            down=1,
            norm_groups=4,
            warp=False,
            motion_step=2,
        )
    )


def pair_batch(x: torch.Tensor, y: torch.Tensor) -> dict:
    return {"frames": torch.stack([to_uint8(x), to_uint8(y)], dim=1)}


def test_overfits_a_batch():
    lam, objective = small_lam(), LAMObjective()
    batch = pair_batch(*shifted_pairs(8)[:2])
    opt = torch.optim.Adam(lam.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, _ = objective(lam, batch)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.3 * losses[0]


def sprite_pairs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A white square on a random blocky background, moved by 4 px in one of 4 directions
    (the true action); the background stays."""
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(n, 3, 8, 8, generator=g) * 0.6 - 0.9
    bg = bg.repeat_interleave(4, 2).repeat_interleave(4, 3)
    actions = torch.arange(n) % 4
    pos = torch.randint(6, 20, (n, 2), generator=g)
    shifts = [(0, 4), (0, -4), (4, 0), (-4, 0)]
    x, y = bg.clone(), bg.clone()
    for i in range(n):
        r, c = (int(v) for v in pos[i])
        dr, dc = shifts[int(actions[i])]
        x[i, :, r : r + 6, c : c + 6] = 1.0
        y[i, :, r + dr : r + dr + 6, c + dc : c + dc + 6] = 1.0
    return x, y, actions


@pytest.mark.slow
def test_finds_the_true_actions_on_fresh_pairs():
    """With new frames every step the decoder cannot memorise x_t -> x_{t+1}: the only way
    to predict where the square goes is to read it from the action, so the codes track it."""
    lam, objective = small_lam(), LAMObjective()
    opt = torch.optim.Adam(lam.parameters(), lr=2e-3)
    for step in range(250):
        x, y, _ = sprite_pairs(16, seed=step + 1)
        loss, _ = objective(lam, pair_batch(x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y, actions = sprite_pairs(64, seed=10_000)
    _, logs = objective(lam, pair_batch(x, y))
    nmi = normalized_mutual_information(actions.numpy(), lam.infer(x, y).numpy())
    print(f"gain {float(logs['gain']):.3f} usage {float(logs['usage_entropy']):.3f} nmi {nmi:.3f}")
    assert float(logs["gain"]) > 0.45  # copying x_t is 0, the best action-blind guess ~0.38
    assert float(logs["usage_entropy"]) > 0.7
    assert nmi > 0.4  # chance ~0.05 (64 pairs, 4 codes)


def test_train_lam_writes_agreement(tmp_path):
    from farsight.data.recorder import RecordConfig, record
    from farsight.train.lam import load_lam, train_lam
    from farsight.train.recipes.lam import LAM_RECIPES

    rec = RecordConfig(frames=600, shard_frames=300)
    rec.env.arena.episode_steps = 100
    record(rec, tmp_path / "store", progress=False)
    cfg = LAM_RECIPES.get("lam_tiny")
    cfg.data.path = str(tmp_path / "store")
    result = train_lam(cfg, tmp_path / "run", progress=False)
    assert result.step == 6 and all(np.isfinite(result.losses))
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    split = "test" if "test" in report else "val"
    assert 0.0 <= report[split]["nmi"] <= 1.0
    assert np.asarray(report[split]["contingency"]).shape == (9, 8)
    assert list((tmp_path / "run" / "samples").glob("actions_step*.png"))
    lam, _, _ = load_lam(tmp_path / "run")
    assert lam.num_codes == 8


def test_still_reference_cancels_the_scene():
    """With ``still_reference`` the encoder's output is relative to the still pair (x_t, x_t):
    a pair where nothing changed gets exactly the bias (3 FSQ levels: the middle code, "no
    move") whatever the scene, and a pair's code does not depend on the rest of its batch."""
    lam = tiny(still_reference=True, num_codes=9, fsq_levels=(3, 3)).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 6, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(lam.encoder(x, x), lam.encoder.out.bias.expand(6, 2))
        still = int(lam.index_of(torch.zeros(1, 2)))
        assert lam.infer(x, x).tolist() == [still] * 6
        whole = lam.infer(x, y)
        alone = torch.cat([lam.infer(x[i : i + 1], y[i : i + 1]) for i in range(6)])
    assert torch.equal(whole, alone)
    # without it the still pair's output depends on the scene
    plain = tiny(num_codes=9, fsq_levels=(3, 3)).eval()
    with torch.no_grad():
        assert plain.encoder(x, x).std(0).min() > 1e-4
