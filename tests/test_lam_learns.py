"""The latent action model must find the true actions where they are the only explanation of a
move, and a collapsed one must say so.

The synthetic store: 32 x 32 frames, a dim blocky background fixed per episode, a white 4 x 4
sprite that the action alone moves by 2 px (no-op, up, right, left, down; the view wraps
around), actions drawn uniformly per step. ``discs`` adds saturated discs that move on their
own at constant velocity and bounce off the edges: the arena's distractors, changes a decoder
that sees only x_t cannot predict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from farsight.config import ConfigError
from farsight.data.store import EpisodeStore, StoreWriter
from farsight.lam_config import LAMConfig
from farsight.latent_actions import code_usage_stats, latent_usage, usage_line
from farsight.models.lam import LatentActionModel
from farsight.train.lam import (
    PICTURE,
    LAMValidation,
    code_picture,
    fixed_pairs,
    load_lam,
    train_lam,
)
from farsight.train.loop import ValContext
from farsight.train.recipes.lam import LAM_RECIPES

pytestmark = pytest.mark.usefixtures("one_thread")

MOVES = np.array([[0, 0], [-2, 0], [0, 2], [0, -2], [2, 0]])  # (row, col) per action
SIZE, SPRITE = 32, 4
DISC_COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)


def sprite_episode(rng: np.random.Generator, length: int, discs: int = 0) -> dict[str, np.ndarray]:
    """One episode: frames (T, 32, 32, 3) uint8 and actions (T,), a_t moving x_t -> x_{t+1}."""
    coarse = rng.integers(20, 90, (SIZE // 4, SIZE // 4, 3))
    background = np.repeat(np.repeat(coarse, 4, 0), 4, 1).astype(np.uint8)
    actions = rng.integers(0, len(MOVES), length)
    pos = rng.integers(0, SIZE, 2)
    disc_pos = rng.uniform(4, SIZE - 4, (discs, 2))
    angle = rng.uniform(0, 2 * np.pi, discs)
    disc_vel = 2.0 * np.stack([np.sin(angle), np.cos(angle)], 1)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    frames = np.empty((length, SIZE, SIZE, 3), np.uint8)
    for t in range(length):
        frame = background.copy()
        for k in range(discs):
            inside = (rows - disc_pos[k, 0]) ** 2 + (cols - disc_pos[k, 1]) ** 2 <= 2.5**2
            frame[inside] = DISC_COLORS[k % len(DISC_COLORS)]
        r, c = (pos[:, None] + np.arange(SPRITE)) % SIZE
        frame[np.ix_(r, c)] = 255
        frames[t] = frame
        pos = (pos + MOVES[actions[t]]) % SIZE
        disc_pos += disc_vel
        bounce = (disc_pos < 3) | (disc_pos > SIZE - 3)
        disc_vel[bounce] *= -1
        disc_pos = np.clip(disc_pos, 3, SIZE - 3)
    return {"frames": frames, "actions": actions}


PADDLE_MOVES = np.array([0, -3, 3])  # columns per action: NOOP, LEFT, RIGHT


def paddle_episode(rng: np.random.Generator, length: int) -> dict[str, np.ndarray]:
    """Breakout's case: a static scene (rows of coloured bricks fixed per episode, black below)
    and a 4 x 1 paddle on row 28 that the action moves by 3 px (wrapping around), so a pair
    differs in at most 8 of 1,024 pixels."""
    background = np.zeros((SIZE, SIZE, 3), np.uint8)
    bricks = rng.integers(60, 255, (6, SIZE // 4, 3)).astype(np.uint8)
    background[4:10] = np.repeat(bricks, 4, 1)
    actions = rng.integers(0, len(PADDLE_MOVES), length)
    col = int(rng.integers(0, SIZE))
    frames = np.empty((length, SIZE, SIZE, 3), np.uint8)
    for t in range(length):
        frames[t] = background
        frames[t, 28, (col + np.arange(4)) % SIZE] = (200, 72, 72)
        col = (col + PADDLE_MOVES[actions[t]]) % SIZE
    return {"frames": frames, "actions": actions}


def sprite_store(
    path: Path, episodes: int = 24, length: int = 64, discs: int = 0, paddle: bool = False
) -> Path:
    meanings = ["NOOP", "LEFT", "RIGHT"] if paddle else ["NOOP", "UP", "RIGHT", "LEFT", "DOWN"]
    meta = {
        "env": {"env_id": "paddle" if paddle else "sprite", "action_meanings": meanings},
        "split": {"seed": 0, "val": 0.1, "test": 0.1},
    }
    arrays = {"frames": ((SIZE, SIZE, 3), "uint8"), "actions": ((), "int64")}
    writer = StoreWriter(path, meta, arrays, shard_frames=episodes * length)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        episode = paddle_episode(rng, length) if paddle else sprite_episode(rng, length, discs)
        writer.add_episode(episode, terminated=False)
    writer.close()
    return path


def sprite_recipe(store: Path, steps: int = 300):
    """lam_tiny with enough steps to learn, and the encoder's motion priors: the pooled
    evidence of each shift (``motion_readout``) and only the change as its input
    (``encoder_frames``); codes shaped as moves (FSQ 3 x 3 read as 2 px per unit,
    ``displacement``)."""
    cfg = LAM_RECIPES.get("lam_tiny")
    cfg.model.width, cfg.model.norm_groups = 16, 4
    cfg.model.motion_step = 2  # the sprite moves 2 px a step
    cfg.model.motion_readout, cfg.model.encoder_frames = True, False
    cfg.model.num_codes, cfg.model.fsq_levels, cfg.model.displacement = 9, (3, 3), 2.0
    cfg.train.steps, cfg.train.batch_size = steps, 16
    cfg.train.val_every = cfg.train.ckpt_every = steps
    cfg.train.optim.lr, cfg.train.optim.warmup_steps = 2e-3, 20
    cfg.data.path = str(store)
    return cfg


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return sprite_store(tmp_path_factory.mktemp("lam") / "sprites")


@pytest.mark.slow
def test_finds_the_sprite_actions(store, tmp_path):
    """The action alone decides the move: the codes must follow the actions (chance NMI ~0.07).

    300 steps (~20 s on one thread) reach a test NMI of 0.88 with codes shaped as moves; the
    same recipe with 8 free codes (FSQ 2 x 2 x 2, no ``displacement``) reached 0.29."""
    result = train_lam(sprite_recipe(store), tmp_path / "run", progress=False)
    assert result.stopped == "done"
    test = json.loads((tmp_path / "run" / "eval.json").read_text())["test"]
    print(f"test NMI {test['nmi']:.3f}  {usage_line(test)}")
    assert test["nmi"] > 0.8
    assert test["collapsed"] == 0.0 and test["codes_used"] >= 0.5
    # and the validation during training logged the same kind of figures
    logged = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1]
    assert all(k in logged for k in ("nmi", "perplexity", "codes_used", "collapsed"))


@pytest.mark.slow
def test_finds_a_paddles_actions_relative_to_the_still_pair(tmp_path):
    """Breakout's case (``paddle_episode``: a pair differs in at most 8 of 1,024 pixels). The
    plain encoder's output hardly varies across pairs and every pair stays on one code (test
    NMI 0.000 at 300 steps); relative to the still pair (``still_reference``) the codes follow
    the paddle: 0.528 in the same 300 steps (~18 s on one thread; chance ~0.02)."""
    cfg = sprite_recipe(sprite_store(tmp_path / "paddle", paddle=True), steps=300)
    cfg.model.motion_step, cfg.model.displacement = 3, 0.0  # 3 px moves; no whole-frame move
    cfg.model.still_reference = True
    train_lam(cfg, tmp_path / "run", progress=False)
    test = json.loads((tmp_path / "run" / "eval.json").read_text())["test"]
    print(f"test NMI {test['nmi']:.3f}  {usage_line(test)}")
    assert test["nmi"] > 0.4 and test["collapsed"] == 0.0


def test_a_collapsed_lam_is_reported_as_such(store, tmp_path, capsys):
    """A LAM whose encoder ignores its input gives one code to every pair: the validation
    metrics flag it and the printed line names it."""
    cfg = sprite_recipe(store)
    cfg.train.steps = 1
    train_lam(cfg, tmp_path / "run", progress=False)
    lam, _, _ = load_lam(tmp_path / "run")
    with torch.no_grad():
        lam.encoder.out.weight.zero_()  # the code no longer depends on the pair
    validation = LAMValidation(cfg, EpisodeStore(store))
    ctx = ValContext(1, lam, lam, torch.device("cpu"), "fp32", tmp_path / "run", None)
    metrics = validation(ctx)
    assert metrics["collapsed"] == 1.0 and metrics["top_share"] == 1.0
    assert metrics["codes_used"] == 1 / lam.num_codes and metrics["perplexity"] == 1.0
    assert metrics["nmi"] == 0.0
    assert "COLLAPSED" in capsys.readouterr().out
    usage = latent_usage(lam, EpisodeStore(store), "test")
    assert usage["collapsed"] == 1.0 and "COLLAPSED" in usage_line(usage)


def test_decoder_context_reads_the_past_and_the_encoder_does_not():
    """With ``context`` 1 the prediction depends on x_{t-1}; the action does not (labelling a
    store needs the pair alone); the decoder refuses to run without its past frames."""
    torch.manual_seed(0)
    cfg = LAMConfig(width=16, blocks=1, down=1, norm_groups=4, context=1)
    lam = LatentActionModel(cfg)
    with torch.no_grad():  # the zero-initialised output layers would hide the past's effect
        for p in lam.decoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, y = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    past = torch.rand(3, 1, 3, 32, 32) * 2 - 1
    a, b = lam(x, y, past), lam(x, y, past.flip(0))
    assert torch.equal(a.index, b.index)
    assert not torch.allclose(a.pred, b.pred)
    with pytest.raises(ValueError, match="past frames"):
        lam(x, y)


def test_displacement_codes_move_the_frame_their_way():
    """With ``displacement``, opposite codes move x_t opposite ways before any training: the
    prediction under code (1, 1) is x_t moved by (2, 2), under (-1, -1) by (-2, -2)."""
    torch.manual_seed(0)
    cfg = LAMConfig(width=16, blocks=1, down=1, norm_groups=4, num_codes=9, fsq_levels=(3, 3))
    cfg.displacement = 2.0
    lam = LatentActionModel(cfg)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    codes = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    with torch.no_grad():
        pred = lam.decode(x, codes)
    for i, move in enumerate([(2, 2), (-2, -2)]):
        moved = {s: torch.roll(x[i], s, (1, 2)) for s in lam.decoder.shifts}
        errors = {s: float((pred[i] - m).abs().mean()) for s, m in moved.items()}
        assert min(errors, key=errors.get) == move
    plain = LatentActionModel(LAMConfig(width=16, blocks=1, down=1, norm_groups=4))
    assert not hasattr(plain.decoder, "move")


def test_move_gate_starts_open_and_can_hold_an_axis():
    """``move_gate`` starts as the plain ``displacement`` (a gate of 1: the same prediction),
    and a gate closed on one axis moves x_t along the other axis only (a view held at a wall
    while the code still says which way the actor went)."""
    torch.manual_seed(0)
    base = dict(width=16, blocks=1, down=1, norm_groups=4, num_codes=9, fsq_levels=(3, 3))
    plain = LatentActionModel(LAMConfig(**base, displacement=2.0))
    gated = LatentActionModel(LAMConfig(**base, displacement=2.0, move_gate=True))
    missing = gated.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["decoder.move_gate.bias", "decoder.move_gate.weight"]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    codes = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    with torch.no_grad():
        assert torch.allclose(gated.decode(x, codes), plain.decode(x, codes), atol=1e-6)
        gated.decoder.move_gate.bias.copy_(torch.tensor([0.0, -30.0]))  # dx held
        pred = gated.decode(x, codes)
    for i, way in enumerate([2, -2]):
        moved = {s: torch.roll(x[i], s, (1, 2)) for s in gated.decoder.shifts}
        errors = {s: float((pred[i] - m).abs().mean()) for s, m in moved.items()}
        assert min(errors, key=errors.get)[1] == 0  # no move along x
        assert errors[(way, 0)] < errors[(-way, 0)]  # along y still the code's way
    with pytest.raises(ConfigError, match="move_gate"):
        LAMConfig(**base, move_gate=True).validate()


def test_train_with_context(store, tmp_path):
    cfg = sprite_recipe(store, steps=4)
    cfg.model.context, cfg.train.batch_size = 1, 4
    result = train_lam(cfg, tmp_path / "run", progress=False)
    assert result.step == 4 and all(np.isfinite(result.losses))
    lam, _, _ = load_lam(tmp_path / "run")
    assert lam.context == 1
    assert (tmp_path / "run" / "eval.json").exists()


def test_the_run_pictures_each_latent_action(store, tmp_path):
    """The finished run holds ``latent_actions.png``: a row for the frames x_t and one per
    latent action, each of the val frames then its change, and a code's row shows what the
    decoder makes of x_t under that code."""
    cfg = sprite_recipe(store, steps=2)
    cfg.data.grid_pairs = 3
    train_lam(cfg, tmp_path / "run", progress=False)
    picture = np.asarray(Image.open(tmp_path / "run" / PICTURE))
    lam, _, _ = load_lam(tmp_path / "run")
    pairs = fixed_pairs(EpisodeStore(store), 3)
    assert np.array_equal(picture[..., :3], code_picture(lam, pairs, "cpu"))
    cell = 2 * (SIZE + 2)  # image_grid: 2 px gaps, upscaled twice
    assert picture.shape[:2] == ((lam.num_codes + 1) * cell - 4, 2 * 3 * cell - 4)
    # row 0, first cell: the first x_t itself (upscaled)
    assert np.array_equal(picture[: 2 * SIZE : 2, : 2 * SIZE : 2, :3], pairs[0, -2])


def test_code_usage_stats():
    uniform = code_usage_stats(np.full(8, 100))
    assert uniform["codes_used"] == 1.0 and uniform["perplexity"] == pytest.approx(8.0)
    assert uniform["collapsed"] == 0.0 and "COLLAPSED" not in usage_line(uniform)
    one = code_usage_stats(np.array([0, 0, 500, 0, 0, 0, 0, 0]))
    assert one["collapsed"] == 1.0 and one["codes_used"] == 1 / 8 and one["perplexity"] == 1.0
    # stray pairs on other codes neither hide a collapse nor count as codes in use
    nearly = code_usage_stats(np.array([960, 10, 10, 10, 10, 0, 0, 0]))
    assert nearly["collapsed"] == 1.0 and nearly["codes_used"] == 1 / 8
    two = code_usage_stats(np.array([500, 500, 0, 0, 0, 0, 0, 0]))
    assert two["collapsed"] == 0.0 and two["codes_used"] == 2 / 8
