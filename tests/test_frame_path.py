"""The frame path (latents + diffusion or FSQ tokens + MaskGIT), chosen once from the objective,
and the Objective protocol every dynamics objective implements."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from farsight.dynamics_config import OBJECTIVE_KINDS, ObjectiveConfig
from farsight.models.autoencoder import Autoencoder, frames_to_images, images_to_frames
from farsight.models.tokens import input_channels, output_channels
from farsight.objectives import Objective, make_objective
from farsight.sampling import SamplingConfig
from farsight.sampling.frame_path import LatentPath, TokenPath, frame_path, path_class
from farsight.train.recipes.autoencoder import ae_tiny
from farsight.world_env import WorldModelEnv
from tests.test_sampling import tiny_dynamics, tiny_world_model

LEVELS = (4, 3)
SIZE = 32  # ae_tiny: 32x32 frames -> an 8x8 grid

pytestmark = pytest.mark.usefixtures("one_thread")


def token_world_model(seed: int = 0):
    """A WorldModel-like object on the token path: tiny MaskGIT dynamics over an untrained
    FSQ autoencoder (levels 4, 3)."""
    dynamics = tiny_dynamics(
        seed, latent_channels=input_channels(LEVELS), out_channels=output_channels(LEVELS)
    )
    torch.manual_seed(seed)
    ae_cfg = dataclasses.replace(ae_tiny().model, kind="fsq", fsq_levels=LEVELS)
    return SimpleNamespace(
        dynamics=dynamics,
        autoencoder=Autoencoder(ae_cfg).eval().requires_grad_(False),
        objective=ObjectiveConfig(kind="maskgit", fsq_levels=LEVELS),
        meta={"env_id": "arena", "size": SIZE, "action_meanings": [f"A{i}" for i in range(5)]},
        context_frames=4,
    )


def frames(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", OBJECTIVE_KINDS)
def test_every_objective_is_an_objective(kind):
    extra = {"fsq_levels": LEVELS} if kind == "maskgit" else {}
    objective = make_objective(ObjectiveConfig(kind=kind, **extra))
    assert isinstance(objective, Objective) and objective.kind == kind
    assert path_class(kind) is (TokenPath if kind == "maskgit" else LatentPath)


def test_the_path_is_chosen_from_the_objective():
    latent, token = tiny_world_model(), token_world_model()
    assert isinstance(WorldModelEnv(latent).path, LatentPath)
    env = WorldModelEnv(token, sampling=SamplingConfig(steps=2, temperature=0.0))
    assert isinstance(env.path, TokenPath)
    assert set(env.controls) == {"steps", "temperature", "kv_cache"}
    assert "MaskGIT" in env.controls["steps"]["label"]
    assert set(WorldModelEnv(latent).controls) == set(LatentPath.CONTROL_SPECS)


def test_token_path_maps_frames_to_token_inputs_and_back():
    wm = token_world_model()
    path = frame_path(wm.dynamics, wm.autoencoder, wm.objective)
    inputs = path.encode(frames(3))
    assert inputs.shape == (1, 3, input_channels(LEVELS), 8, 8)
    assert bool((inputs[0, :, -1] == 0).all())  # the mask flag: nothing masked
    # The frames decoded from the token inputs are the FSQ autoencoder's reconstruction.
    with torch.inference_mode():
        ae = wm.autoencoder
        recon = ae.decode(ae.quantize(ae.encode(frames_to_images(torch.from_numpy(frames(3))))[0]))
    got = path.decode(inputs[0])
    assert got.shape == (3, SIZE, SIZE, 3) and got.dtype == np.uint8
    assert np.array_equal(got, images_to_frames(recon).numpy())


@pytest.mark.parametrize("world_model", [tiny_world_model, token_world_model])
def test_stepping_equals_generating_one_frame_at_a_time(world_model):
    """Both paths: ``step`` and ``generate`` (autoregressive schedule) sample the same frames
    from the same seed, through the path's ``sample_frame`` and ``generate``."""
    wm = world_model()
    sampling = SamplingConfig(steps=2, temperature=1.0)
    prompt = {"prompt": {"frames": frames(2), "actions": np.array([1, 2])}}
    env = WorldModelEnv(wm, sampling=sampling, seed=5)
    env.reset(options=prompt)
    stepped = np.stack([env.step(a)[0] for a in (3, 0, 4)])
    env.reset(seed=5, options=prompt)
    assert np.array_equal(env.generate([3, 0, 4]), stepped)
