"""A tiny model must learn to use its actions: the fastest detector of anything between batch,
model, objective and sampler that would make the actions uninformative.

The synthetic world: an 8x8 latent grid, 4 channels, one bright sprite on a dim textured
background; the action alone decides where the sprite goes next (no-op, up, right, left, down;
the grid wraps around). A model that ignores the actions cannot do better than a blur over the
five possible next positions.

The model is the tiny size with the inputs the CPU recipes use to follow actions
(``follows_actions``), trained by the quickstart's objective (next-frame diffusion): 400
steps, ten-odd seconds on one core.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from farsight.dynamics_config import ObjectiveConfig, dynamics_tiny
from farsight.models.dynamics import DynamicsModel
from farsight.objectives import make_objective
from farsight.objectives.action_probe import action_probe
from farsight.sampling.config import SamplingConfig
from farsight.sampling.rollout import generate, new_state, prime
from farsight.train.recipes.dynamics import follows_actions

MOVES = torch.tensor([[0, 0], [-1, 0], [0, 1], [0, -1], [1, 0]])  # (row, col) per action
GRID, CHANNELS = 8, 4


OBJECTIVE = ObjectiveConfig(kind="next_frame")


# Trains for ten-odd seconds.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def sprite_clips(batch: int, frames: int, generator: torch.Generator):
    """Latent clips (B, T, C, 8, 8) and actions (B, T), a_t moving the sprite from frame t to
    frame t + 1."""
    actions = torch.randint(0, len(MOVES), (batch, frames), generator=generator)
    pos = torch.randint(0, GRID, (batch, 2), generator=generator)
    background = 0.3 * torch.randn(batch, 1, CHANNELS, GRID, GRID, generator=generator)
    clips = background.repeat(1, frames, 1, 1, 1)
    rows = torch.arange(batch)
    for t in range(frames):
        clips[rows, t, :, pos[:, 0], pos[:, 1]] = torch.tensor([2.0, -2.0, 2.0, -2.0])
        pos = (pos + MOVES[actions[:, t]]) % GRID
    return clips, actions


def train_tiny(steps: int, seed: int = 0, **model_overrides) -> DynamicsModel:
    cfg = dataclasses.replace(follows_actions(dynamics_tiny()), **model_overrides)
    cfg.heads = dataclasses.replace(cfg.heads, offsets=(1,))
    torch.manual_seed(seed)
    model = DynamicsModel(cfg)
    objective = make_objective(OBJECTIVE)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        latents, actions = sprite_clips(16, 6, g)
        loss, _ = objective(model, {"latents": latents, "actions": actions}, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval().requires_grad_(False)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 4.0) -> float:
    return 10 * math.log10(peak**2 / float((a - b).pow(2).mean()))


def delta_psnr(model: DynamicsModel, horizon: int = 3, seed: int = 7) -> float:
    """Genie's Delta-PSNR over an open-loop rollout: true actions vs uniformly random ones."""
    g = torch.Generator().manual_seed(seed)
    latents, actions = sprite_clips(32, 2 + horizon, g)
    actions_in = torch.cat([torch.full_like(actions[:, :1], model.start_action), actions], 1)
    random_in = actions_in.clone()
    random_in[:, 2:] = torch.randint(0, len(MOVES), random_in[:, 2:].shape, generator=g)
    cfg = SamplingConfig(steps=4, context="stable", context_level=0.02)

    def roll(acts: torch.Tensor) -> torch.Tensor:
        state = new_state(model, torch.Generator().manual_seed(seed))
        policy = cfg.policy(0.02)
        prime(model, state, latents[:, :2], acts[:, :2], policy)
        return generate(model, state, acts[:, 2 : 2 + horizon], cfg)

    truth = latents[:, 2:]
    return psnr(roll(actions_in), truth) - psnr(roll(random_in), truth)


@pytest.fixture(scope="module")
def trained(one_thread) -> DynamicsModel:
    return train_tiny(400)


def probe(model: DynamicsModel) -> dict[str, float]:
    g = torch.Generator().manual_seed(3)
    latents, actions = sprite_clips(32, 6, g)
    return action_probe(model, {"latents": latents, "actions": actions}, OBJECTIVE, g)


def test_a_tiny_model_learns_to_use_its_actions(trained):
    gain = delta_psnr(trained)
    assert gain > 1.0, f"Delta-PSNR {gain:.2f} dB: the model does not use its actions"
    result = probe(trained)
    assert result["probe/action_gain_db"] > 1.0, result
    assert result["probe/copy_gain_db"] > 1.0, result  # and it beats copying the last frame


def test_an_action_blind_model_has_no_action_gain(trained):
    """The same measurements on the trained model with every action embedding forced to one
    vector read zero: the gain above comes from the actions, not from the measurement."""
    blind = copy.deepcopy(trained)
    with torch.no_grad():
        for table in (blind.action_embed, blind.action_tokens, blind.prev_embed.per_index):
            weight = table.weight if isinstance(table, torch.nn.Embedding) else table
            weight[:] = weight[0]
    assert abs(delta_psnr(blind)) < 1e-6
    assert abs(probe(blind)["probe/action_gain_db"]) < 1e-6
