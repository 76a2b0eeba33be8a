"""``WorldModelEnv``: a trained world model as a gymnasium env. Play, rollout and eval use it.

    env = WorldModelEnv(load_world_model(ckpt), store="data/arena", seed=0)
    frame, info = env.reset(options={"prompt": "random"})     # real frames as context
    frame, reward, terminated, truncated, info = env.step(action)   # one generated frame

``reset`` encodes real prompt frames and commits them as context; ``step(action)`` generates
the next frame (a few denoising steps over the KV cache) and decodes only that frame. The
cache holds W frames, so a step costs the same at frame 50 and at frame 10,000, and memory is
flat. Rewards are 0 and episodes never terminate (the model predicts frames only); an optional
``max_episode_steps`` truncates.

Prompts (``options["prompt"]``):
    "random"                 the first frames of a random episode of ``prompt_split`` (held-out
                             ``test`` by default; all episodes if that split is empty) of the
                             store given at construction; without a store, as "env"
    int                      that episode of the store
    "env"                    a fresh real env of the recorded kind, run with random actions
    {"frames": (P, H, W, 3) uint8, "actions": (P,) int}   explicit frames (and the actions taken
                             after each; without them no-ops are assumed)
``options["start"]`` picks the first frame within a store episode (default 0).

Controls (``controls`` / ``configure``, shown on the play page): steps, sampler, shift,
context (clean / stable / dynamic), context_level, context_noise, dynamic_cap, kv_cache.
``step`` always generates one frame (autoregressive: the actions ahead are unknown);
``generate(actions)`` follows ``sampling.scheduling`` when the actions ahead are known.

Randomness: one torch generator per env, seeded by ``seed`` (construction) or by
``reset(seed=...)``: the same seed gives the same prompt and the same rollout.

MaskGIT models (``objective.kind == "maskgit"``, the Genie path) run the same way over FSQ
tokens: frames are encoded to token digits, each step decodes a frame by MaskGIT
(``farsight/sampling/maskgit.py``: ``steps`` unmasking steps at ``temperature``) over the same
KV cache, always with a clean context. Models trained on latent actions have actions named
LATENT_0.. (the play page binds them to keys 1..|A|).

Dimension legend: P prompt frames, G generated frames, H W frame size, C h w latent
channels and grid.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from farsight.action_source import store_for_model
from farsight.data.store import EpisodeStore
from farsight.dynamics_config import ObjectiveConfig
from farsight.envs import EnvConfig, make_env
from farsight.envs.base import ArenaConfig, FarsightEnv
from farsight.envs.controls import validate_settings
from farsight.models.autoencoder import Autoencoder, frames_to_images, images_to_frames
from farsight.models.dynamics import DynamicsModel, actions_into_frames
from farsight.models.tokens import fsq_digits
from farsight.sampling.config import SamplingConfig, model_sampling
from farsight.sampling.context import CONTEXT_POLICIES
from farsight.sampling.maskgit import CLEAN, clean_input, generate_tokens, sample_token_frame
from farsight.sampling.rollout import RolloutState, generate, new_state, prime, sample_chunk
from farsight.sampling.samplers import SAMPLERS
from farsight.sampling.schedules import autoregressive_schedule


class WorldModelLike(Protocol):
    """What the env needs of a loaded world model (``farsight.world_model.WorldModel``)."""

    dynamics: DynamicsModel
    autoencoder: Autoencoder
    objective: ObjectiveConfig
    meta: dict
    context_frames: int


@dataclass
class WorldModelParts:
    """The parts of a world model the env runs: a dynamics run's validation hands over these;
    a loaded ``WorldModel`` adds its run config and step."""

    dynamics: DynamicsModel
    autoencoder: Autoencoder
    objective: ObjectiveConfig
    meta: dict
    """The recorded env's metadata: env_id, size, action_meanings, ..."""
    context_frames: int
    """Clip length the model was trained on."""


def action_meanings_from(meta: dict, num_actions: int) -> tuple[str, ...]:
    """The recorded env's action names (``meta`` is the store's env meta, or the whole store
    meta); numbered names where none were recorded."""
    names = meta.get("action_meanings") or (meta.get("env") or {}).get("action_meanings")
    if not names:
        return tuple(f"ACTION_{i}" for i in range(num_actions))
    if len(names) != num_actions:
        raise ValueError(
            f"the recording names {len(names)} actions but the model has {num_actions}"
        )
    return tuple(str(n) for n in names)


# Play-page controls: name -> (spec without value, SamplingConfig field).
CONTROL_SPECS: dict[str, dict] = {
    "steps": {"type": "int", "min": 1, "max": 16, "label": "denoising steps"},
    "sampler": {"type": "choice", "options": list(SAMPLERS)},
    "shift": {
        "type": "float",
        "min": 0.25,
        "max": 4.0,
        "step": 0.25,
        "label": "timestep shift",
        "help": "> 1 spends more steps at high noise (layout, motion)",
    },
    "context": {
        "type": "choice",
        "options": list(CONTEXT_POLICIES),
        "help": "clean: trust the past; stable: label it slightly noisy; dynamic: renoise it "
        "at every step (recomputes the window: slower)",
    },
    "context_level": {
        "type": "float",
        "min": 0.0,
        "max": 0.3,
        "step": 0.005,
        "label": "stable level",
    },
    "context_noise": {"type": "bool", "label": "really noise stable context"},
    "dynamic_cap": {"type": "float", "min": 0.0, "max": 1.0, "step": 0.05, "label": "dynamic cap"},
    "kv_cache": {"type": "bool", "label": "KV cache"},
}


# MaskGIT models: their sampling knobs (the diffusion ones do not apply).
TOKEN_CONTROL_SPECS: dict[str, dict] = {
    "steps": {"type": "int", "min": 1, "max": 32, "label": "MaskGIT steps"},
    "temperature": {
        "type": "float",
        "min": 0.0,
        "max": 2.0,
        "step": 0.05,
        "label": "temperature",
        "help": "0: the most likely token everywhere",
    },
    "kv_cache": {"type": "bool", "label": "KV cache"},
}


class WorldModelEnv(FarsightEnv):
    """A world model behind the gymnasium API (see the module docstring)."""

    def __init__(
        self,
        world_model: WorldModelLike,
        store: EpisodeStore | str | Path | None = None,
        *,
        sampling: SamplingConfig | None = None,
        prompt_frames: int | None = None,
        prompt_split: str = "test",
        seed: int | None = None,
        max_episode_steps: int = 0,
    ):
        self.world_model = world_model
        self.model = world_model.dynamics
        self.autoencoder = world_model.autoencoder
        self.objective = world_model.objective
        self.sampling = (sampling or model_sampling(world_model)).validate()
        if self.sampling.context_level is None:
            self.sampling = dataclasses.replace(
                self.sampling, context_level=float(self.objective.context_tau)
            )
        cfg = self.model.cfg
        self.device = next(self.model.parameters()).device
        self.token_levels = (
            tuple(self.objective.fsq_levels) if self.objective.kind == "maskgit" else None
        )
        self.action_meanings = action_meanings_from(world_model.meta, cfg.num_actions)
        factor = self.autoencoder.cfg.factor
        self.frame_size = (cfg.latent_size[0] * factor, cfg.latent_size[1] * factor)
        self.observation_space = spaces.Box(0, 255, (*self.frame_size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(cfg.num_actions)
        window = cfg.window
        self.prompt_frames = prompt_frames or max(1, min(world_model.context_frames, window))
        if self.prompt_frames < 1:
            raise ValueError(f"prompt_frames={self.prompt_frames} must be >= 1")
        self.store = EpisodeStore(store) if isinstance(store, str | Path) else store
        if self.store is not None:
            # A model trained on latent (or no) actions reads the store's episodes that way.
            self.store = store_for_model(world_model, self.store, self.device)
        self.prompt_split = prompt_split
        self.max_episode_steps = max_episode_steps
        self._seed_streams(seed)
        self.state: RolloutState | None = None
        self.steps_taken = 0
        self.episode: int | None = None
        self._ar_levels = autoregressive_schedule(self.sampling.steps, self.sampling.shift)

    # -- seeding ---------------------------------------------------------------------------------
    def _seed_streams(self, seed: int | None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self._rng = np.random.default_rng(seed)
        self._generator = torch.Generator(device=self.device).manual_seed(int(seed))

    # -- controls ----------------------------------------------------------------------------
    @property
    def controls(self) -> dict[str, dict]:
        specs = TOKEN_CONTROL_SPECS if self.token_levels else CONTROL_SPECS
        controls = {
            name: {**spec, "value": getattr(self.sampling, name)} for name, spec in specs.items()
        }
        if self.token_levels:
            return controls
        # A model trained with a larger context level than the slider's range still shows it.
        level = controls["context_level"]
        level["max"] = max(level["max"], level["value"])
        return controls

    def configure(self, **settings: Any) -> None:
        """Change sampling settings (validated all before any is applied); takes effect at the
        next step. Switching the context policy or its level re-derives the cached context."""
        settings = validate_settings(self.controls, settings)
        sampling = dataclasses.replace(self.sampling, **settings).validate()
        self.sampling = sampling
        self._ar_levels = autoregressive_schedule(sampling.steps, sampling.shift)
        if self.state is not None:
            self._apply_cache_setting()

    def _apply_cache_setting(self) -> None:
        state = self.state
        if self.sampling.kv_cache and state.cache is None:
            state.cache = self.model.new_cache()
            state.cache_levels = None  # built from the recent frames at the next step
            state.pending = 0
        elif not self.sampling.kv_cache:
            state.cache = None
            state.pending = 0

    @property
    def policy(self):
        if self.token_levels:
            return CLEAN
        return self.sampling.policy(self.objective.context_tau)

    # -- prompts -----------------------------------------------------------------------------
    def _store_prompt(self, episode: int, start: int) -> tuple[np.ndarray, np.ndarray, str]:
        if self.store is None:
            raise ValueError("prompt from a store episode, but the env was given no store")
        if not 0 <= episode < self.store.num_episodes:
            raise ValueError(
                f"prompt episode {episode} out of range: the store has {self.store.num_episodes}"
            )
        length = self.store.episodes[episode].length
        if not 0 <= start < length:
            raise ValueError(f"prompt start {start} outside episode {episode} of {length} frames")
        count = min(self.prompt_frames, length - start)
        clip = self.store.read(episode, start, count, keys=("frames", "actions"))
        self.episode = episode
        return clip["frames"], clip["actions"], f"episode {episode} frames {start}..{start + count}"

    def _random_episode(self) -> int:
        episodes = self.store.split_episodes(self.prompt_split) or list(
            range(self.store.num_episodes)
        )
        if not episodes:
            raise ValueError(f"store {self.store.path} holds no episodes")
        return int(episodes[self._rng.integers(len(episodes))])

    def _env_prompt(self) -> tuple[np.ndarray, np.ndarray, str]:
        """A fresh real env of the recorded kind, run with uniformly random actions."""

        meta = self.world_model.meta
        env_meta = meta.get("env", meta)
        if "env_id" not in env_meta:
            raise ValueError("prompt 'env': the model's metadata names no env_id")
        cfg = EnvConfig(id=env_meta["env_id"], size=int(env_meta.get("size", self.frame_size[0])))
        if isinstance(env_meta.get("arena"), dict):
            cfg.arena = ArenaConfig(**env_meta["arena"])
        env = make_env(cfg)
        if env.action_space.n != self.action_space.n:
            env.close()
            raise ValueError(
                f"prompt 'env': {cfg.id} has {env.action_space.n} actions, the model "
                f"{self.action_space.n}"
            )
        try:
            frame, _ = env.reset(seed=int(self._rng.integers(2**31)))
            frames, actions = [frame], []
            for _ in range(self.prompt_frames - 1):
                action = int(self._rng.integers(env.action_space.n))
                frame, *_ = env.step(action)
                frames.append(frame)
                actions.append(action)
            actions.append(0)
        finally:
            env.close()
        return np.stack(frames), np.asarray(actions), f"fresh {cfg.id} env"

    def _prompt(self, prompt: Any, start: int) -> tuple[np.ndarray, np.ndarray, str]:
        self.episode = None
        if isinstance(prompt, str) and prompt == "random" and self.store is not None:
            return self._store_prompt(self._random_episode(), start)
        if isinstance(prompt, str) and prompt == "random":
            return self._env_prompt()
        if isinstance(prompt, str) and prompt == "env":
            return self._env_prompt()
        if isinstance(prompt, int | np.integer) and not isinstance(prompt, bool):
            return self._store_prompt(int(prompt), start)
        if isinstance(prompt, np.ndarray):
            prompt = {"frames": prompt}
        if isinstance(prompt, dict) and "frames" in prompt:
            frames = np.asarray(prompt["frames"])
            actions = prompt.get("actions")
            actions = np.zeros(len(frames), np.int64) if actions is None else np.asarray(actions)
            if frames.ndim != 4 or frames.shape[1:] != (*self.frame_size, 3):
                raise ValueError(
                    f"prompt frames must be (P, {self.frame_size[0]}, {self.frame_size[1]}, 3) "
                    f"uint8, got {frames.shape}"
                )
            if len(actions) != len(frames) or len(frames) == 0:
                raise ValueError(
                    f"prompt needs >= 1 frame and one action per frame, got {len(frames)} frames "
                    f"and {len(actions)} actions"
                )
            return frames.astype(np.uint8), actions.astype(np.int64), f"{len(frames)} given frames"
        raise ValueError(
            f"prompt={prompt!r}: expected 'random', 'env', an episode id, an array of frames or "
            "{'frames': ..., 'actions': ...}"
        )

    # -- gymnasium ---------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._seed_streams(seed)
        options = options or {}
        frames, actions, where = self._prompt(
            options.get("prompt", "random"), int(options.get("start", 0))
        )
        bad = (actions < 0) | (actions >= self.action_space.n)
        if bad.any():
            raise ValueError(f"prompt actions {actions[bad][:4].tolist()} outside the action space")
        frames = frames[-self.prompt_frames :]
        actions = actions[-self.prompt_frames :]
        latents = self.encode(frames)
        actions_in = actions_into_frames(
            torch.as_tensor(actions, device=self.device)[None], self.model.start_action
        )
        self.state = new_state(self.model, self._generator, kv_cache=self.sampling.kv_cache)
        prime(self.model, self.state, latents, actions_in, self.policy, self.objective.schedule)
        self.steps_taken = 0
        self._frame = frames[-1]
        info = {"prompt": where, "prompt_frames": len(frames), "episode": self.episode}
        return self._frame, info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        action = self._check_action(action)
        t0 = time.perf_counter()
        if self.token_levels:
            digits = sample_token_frame(
                self.model,
                self.state,
                torch.tensor([[action]], device=self.device),
                self.token_levels,
                steps=self.sampling.steps,
                temperature=self.sampling.temperature,
            )
            latent = self._token_frame(digits)
        else:
            latent = self._sample_latent(action)
        t1 = time.perf_counter()
        self._frame = self.decode(latent)[0]
        t2 = time.perf_counter()
        self.steps_taken += 1
        truncated = bool(self.max_episode_steps and self.steps_taken >= self.max_episode_steps)
        info = {
            "frame_index": self.state.next_frame - 1,
            "step_ms": (t2 - t0) * 1000,
            "generate_ms": (t1 - t0) * 1000,
            "decode_ms": (t2 - t1) * 1000,
        }
        return self._frame, 0.0, False, truncated, info

    def _sample_latent(self, action: int) -> Tensor:
        return sample_chunk(
            self.model,
            self.state,
            torch.tensor([[action]], device=self.device),
            self._ar_levels,
            self.policy,
            sampler=self.sampling.sampler,
            prediction=self.objective.prediction,
            schedule=self.objective.schedule,
        )[:, 0]

    def generate(
        self,
        actions: Sequence[int] | np.ndarray,
        on_frame: Callable[[int, np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """G frames (G, H, W, 3) uint8 following ``actions`` (a_t taken after the current
        frame, then after each generated one), scheduled as ``sampling.scheduling`` says (the
        actions ahead are known, so chunked, pyramid and full-sequence generation work here).
        ``on_frame(index, frame)`` sees each frame as soon as it is decoded."""
        if self.state is None:
            raise RuntimeError("call reset() before generate()")
        actions_in = torch.as_tensor(
            [self._check_action(a) for a in actions], device=self.device
        ).reshape(1, -1)
        frames: list[np.ndarray] = []

        def decode_one(index: int, latent: Tensor) -> None:
            frames.append(self.decode(latent)[0])
            if on_frame is not None:
                on_frame(index, frames[-1])

        if self.token_levels:
            generate_tokens(
                self.model,
                self.state,
                actions_in,
                self.token_levels,
                steps=self.sampling.steps,
                temperature=self.sampling.temperature,
                on_frame=lambda i, digits: decode_one(i, self._token_frame(digits)),
            )
        else:
            generate(
                self.model,
                self.state,
                actions_in,
                self.sampling,
                prediction=self.objective.prediction,
                schedule=self.objective.schedule,
                context_tau=self.objective.context_tau,
                on_frame=decode_one,
            )
        self.steps_taken += len(frames)
        if frames:
            self._frame = frames[-1]
        return np.stack(frames) if frames else np.zeros((0, *self.frame_size, 3), np.uint8)

    def _check_action(self, action: Any) -> int:
        if isinstance(action, bool) or not isinstance(action, int | np.integer):
            raise ValueError(f"action {action!r} is not an int")
        if not 0 <= int(action) < self.action_space.n:
            raise ValueError(f"action {action} outside [0, {self.action_space.n})")
        return int(action)

    def render(self) -> np.ndarray | None:
        return getattr(self, "_frame", None)

    def env_meta(self) -> dict:
        return {"env_id": "world_model", "source": self.world_model.meta}

    def close(self) -> None:
        self.state = None

    # -- latents <-> frames --------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> Tensor:
        """uint8 (P, H, W, 3) -> normalized latents (1, P, C, h, w); MaskGIT models: the
        token input of the frames, unmasked (1, P, C + 1, h, w)."""
        images = frames_to_images(torch.from_numpy(np.ascontiguousarray(frames))).to(self.device)
        if self.token_levels:
            pre = self.autoencoder.encode(images)[0].unsqueeze(0)
            return clean_input(fsq_digits(self.autoencoder.fsq, pre), self.token_levels)
        latents = self.autoencoder.encode_normalized(images)
        cfg = self.model.cfg
        want = (cfg.latent_channels, *cfg.latent_size)
        if tuple(latents.shape[1:]) != want:
            raise ValueError(
                f"the autoencoder gives latents {tuple(latents.shape[1:])}, the dynamics model "
                f"takes {want}"
            )
        return latents.unsqueeze(0)

    def _token_frame(self, digits: Tensor) -> Tensor:
        """MaskGIT: a frame's digits (B, C, h, w) -> its unmasked token input (B, C + 1, h, w),
        the same space ``encode`` maps true frames to (so latent errors compare like with like)."""

        return clean_input(digits.unsqueeze(1), self.token_levels)[:, 0]

    @torch.inference_mode()
    def decode(self, latents: Tensor) -> np.ndarray:
        """Normalized latents (B, C, h, w) -> uint8 frames (B, H, W, 3); MaskGIT models: token
        inputs (B, C + 1, h, w) (FSQ code values and an all-zero mask flag) -> frames."""
        if self.token_levels:
            images = self.autoencoder.decode(latents[:, :-1].float())
            return images_to_frames(images).cpu().numpy()
        return images_to_frames(self.autoencoder.decode_normalized(latents)).cpu().numpy()
