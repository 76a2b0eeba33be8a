"""The object head: target maps from a store's state, its loss, and a run that trains it."""

import json
import math

import pytest
import torch

from farsight.config import ConfigError
from farsight.data.store import EpisodeStore
from farsight.dynamics_config import ObjectiveConfig, check_objective_fits_model, dynamics_tiny
from farsight.errors import UsageError
from farsight.models.dynamics import DynamicsModel
from farsight.objectives import make_objective
from farsight.objectives.object_maps import (
    entity_count,
    entity_positions,
    object_map_error,
    object_maps,
)


def test_a_bump_sits_on_the_entitys_cell_and_carries_its_sub_cell_position():
    # Frame pixels per latent cell 4: x = 9 px lies in column 2 (8..12 px), y = 21 in row 5.
    xy = torch.tensor([[[[9.0, 21.0], [10.5, 21.0]]]])
    maps = object_maps(xy, (16, 16), cell=4.0, sigma=0.5)
    assert maps.shape == (1, 1, 2, 16, 16)
    left, right = maps[0, 0]
    assert divmod(int(left.argmax()), 16) == (5, 2) and divmod(int(right.argmax()), 16) == (5, 2)
    assert left.max() < 1.0  # 9 px is a quarter cell left of column 2's centre (10 px)
    # Moved right within the cell: more weight on column 3, less on column 1.
    assert right[5, 3] > left[5, 3] and right[5, 1] < left[5, 1]
    # A quarter cell off the centre on each axis: d^2 = 2 * 0.25^2, 2 sigma^2 = 0.5.
    assert torch.isclose(left[5, 2], torch.tensor(math.exp(-2 * 0.25**2 / 0.5)))


def test_an_entity_not_shown_has_an_empty_map():
    xy = torch.tensor([[[[float("nan"), float("nan")], [-40.0, 30.0], [30.0, 30.0]]]])
    maps = object_maps(xy, (16, 16), cell=4.0, sigma=0.5)
    assert maps[0, 0, 0].abs().max() == 0
    assert maps[0, 0, 1].max() < 1e-6  # far outside the view
    assert maps[0, 0, 2].max() > 0.5


def test_arena_entities_are_the_player_then_the_objects_in_view_pixels():
    state = {
        "player": torch.tensor([[[50.0, 60.0]]]),
        "camera": torch.tensor([[[18.0, 28.0]]]),
        "objects": torch.tensor([[[[20.0, 30.0], [100.0, 29.0]]]]),
        "object_vel": torch.zeros(1, 1, 2, 2),
    }
    xy = entity_positions(state)
    assert xy.shape == (1, 1, 3, 2)
    assert xy[0, 0].tolist() == [[32.0, 32.0], [2.0, 2.0], [82.0, 1.0]]
    shapes = {k: tuple(v.shape[2:]) for k, v in state.items()}
    assert entity_count(shapes) == 3


def test_ram_map_entities_are_read_as_they_are_and_other_states_have_none():
    xy = torch.tensor([[[[3.0, 4.0], [float("nan"), float("nan")]]]])
    read = entity_positions({"object_xy": xy, "ram": torch.zeros(1, 1, 128)})
    assert torch.allclose(read, xy, equal_nan=True)
    assert entity_count({"object_xy": (2, 2), "ram": (128,)}) == 2
    assert entity_count({"ram": (128,)}) == 0
    with pytest.raises(KeyError, match="object_xy"):
        entity_positions({"ram": torch.zeros(1, 1, 128)})


def test_the_error_is_relative_to_the_maps_and_counts_only_masked_frames():
    target = object_maps(torch.tensor([[[[9.0, 9.0]], [[30.0, 30.0]]]]), (16, 16), 4.0, 0.5)
    mask = torch.tensor([[False, True]])
    assert object_map_error(torch.zeros_like(target), target, mask) == pytest.approx(1.0)
    assert object_map_error(target, target, mask) == 0
    wrong_where_unmasked = target.clone()
    wrong_where_unmasked[:, 0] = 5.0
    assert object_map_error(wrong_where_unmasked, target, mask) == 0


def test_config_needs_the_head_and_a_denoising_objective():
    model = dynamics_tiny()
    with pytest.raises(ConfigError, match="object_channels"):
        check_objective_fits_model(model, ObjectiveConfig(object_maps=0.5))
    with pytest.raises(ConfigError, match="maskgit"):
        ObjectiveConfig(kind="maskgit", fsq_levels=(5, 5), object_maps=0.5).validate()
    with pytest.raises(ConfigError, match="object_sigma"):
        ObjectiveConfig(object_sigma=0).validate()
    model.object_channels = 7  # a head without its loss: DDP would stop on it
    with pytest.raises(ConfigError, match="object_maps"):
        check_objective_fits_model(model, ObjectiveConfig())
    model.object_channels = -1
    with pytest.raises(ConfigError, match="object_channels"):
        model.validate()


def tiny_batch(frames=3, k=2):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, frames + 7, 4, 8, 8, generator=g)
    xy = torch.rand(2, frames + 7, k, 2, generator=g) * 32
    return {
        "latents": latents,
        "actions": torch.randint(0, 3, (2, frames + 7), generator=g),
        "object_maps": object_maps(xy, (8, 8), cell=4.0, sigma=0.5),
    }


def tiny_model(k=2):
    cfg = dynamics_tiny()
    cfg.latent_channels, cfg.latent_size, cfg.num_actions = 4, (8, 8), 3
    cfg.object_channels = k
    torch.manual_seed(0)
    return DynamicsModel(cfg)


def test_the_object_term_trains_the_trunk_and_rollouts_do_without_it():
    model = tiny_model()
    objective = make_objective(ObjectiveConfig(object_maps=0.5))
    batch = tiny_batch()
    terms = objective.terms(model, batch, torch.Generator().manual_seed(1))
    assert terms.weights["objects"] == 0.5 and terms.values["objects"].item() == pytest.approx(1.0)
    terms.values["objects"].backward()
    # The head starts at zero (maps empty): its own weights learn first, head 1 not at all...
    assert model.object_head[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in model.final.parameters())
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    # ...and from the next step on it reaches the trunk (its embeddings and blocks).
    objective.terms(model, batch, torch.Generator().manual_seed(1)).values["objects"].backward()
    for module in (model.input_embed, model.blocks[0]):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    # Without the maps the objective refuses.
    with pytest.raises(ValueError, match="object_maps"):
        objective.terms(model, {k: v for k, v in batch.items() if k != "object_maps"})


def test_a_tiny_object_head_learns_where_the_entities_are():
    # Each entity is drawn into a latent channel of its own, so the maps are readable from
    # the frame (at low noise levels) as a sprite is from an encoded frame.
    model = tiny_model()
    objective = make_objective(ObjectiveConfig(object_maps=1.0))
    batch = tiny_batch()
    batch["latents"][:, :, :2] = 3 * batch["object_maps"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(40):
        terms = objective.terms(model, batch, torch.Generator().manual_seed(step % 4))
        losses.append(terms.values["objects"].item())
        opt.zero_grad()
        terms.total().backward()
        opt.step()
    assert losses[0] == pytest.approx(1.0) and min(losses[-4:]) < 0.5


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_run_with_object_maps_sizes_the_head_from_the_store(arena_world, tmp_path):
    from farsight.train.dynamics import train_dynamics
    from farsight.train.recipes.dynamics import DYNAMICS_RECIPES
    from farsight.world_env import WorldModelEnv
    from farsight.world_model import load_world_model

    cfg = DYNAMICS_RECIPES.get("dyn_tiny")
    cfg.data.path, cfg.data.autoencoder = str(arena_world / "store"), str(arena_world / "ae")
    cfg.objective.object_maps = 0.5
    result = train_dynamics(cfg, tmp_path / "run", progress=False)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert "loss_objects" in json.loads(lines[-1])
    assert all(math.isfinite(x) for x in result.losses)
    num_objects = EpisodeStore(arena_world / "store").arrays["state.objects"][0][0]
    wm = load_world_model(tmp_path / "run")
    assert wm.dynamics.cfg.object_channels == 1 + num_objects

    # It rolls out as any other world model, and never computes the head there.
    def no_head(*args):
        raise AssertionError("a rollout computed the object head")

    wm.dynamics.object_maps = no_head
    env = WorldModelEnv(wm, arena_world / "store", seed=0)
    env.reset(options={"prompt": 1})
    frame, *_ = env.step(1)
    assert frame.shape == (64, 64, 3)


def test_a_store_without_positions_is_refused_by_name(tmp_path):
    from farsight.train.dynamics_data import fit_object_head
    from farsight.train.recipes.dynamics import DYNAMICS_RECIPES

    class Cache:
        path = tmp_path / "latents"
        meta = {"source": {"frame_shape": [64, 64, 3]}}

        class store:  # noqa: N801
            arrays = {"latents": ((8, 16, 16), "float16"), "state.ram": ((128,), "uint8")}

    cfg = DYNAMICS_RECIPES.get("dyn_tiny")
    cfg.objective.object_maps = 0.5
    with pytest.raises(UsageError, match=r"latents.*\['ram'\]"):
        fit_object_head(cfg, Cache())
    # A setting the option refuses by itself is named first, whatever the store lacks.
    cfg.objective.kind, cfg.objective.fsq_levels = "maskgit", (5, 5)
    with pytest.raises(ConfigError, match="not maskgit"):
        fit_object_head(cfg, Cache())


def test_cut_clips_cut_the_maps_with_the_latents():
    from farsight.train.dynamics_objective import cut_clips
    from farsight.train.recipes.dynamics import DYNAMICS_RECIPES

    cfg = DYNAMICS_RECIPES.get("dyn_tiny")
    cfg.data.clip_len, cfg.data.min_clip_len = 5, 2
    frame = torch.arange(12.0).view(1, 12, 1, 1, 1)  # each frame holds its index
    batch = {
        "latents": frame.expand(1, 12, 2, 4, 4),
        "actions": torch.arange(12).view(1, 12),
        "object_maps": frame.expand(1, 12, 3, 4, 4),
    }
    torch.manual_seed(0)
    for _ in range(5):
        cut, length = cut_clips(batch, cfg)
        drop = 5 - length
        assert cut["object_maps"].shape[1] == cut["latents"].shape[1] == 12 - drop
        assert cut["object_maps"][0, :, 0, 0, 0].tolist() == list(range(drop, 12))
        assert torch.equal(cut["object_maps"][:, :, 0], cut["latents"][:, :, 0, :, :])
