"""World-model rollout speed: frames/s with decoding, flatness over 2,000 frames, KV cache vs
recomputing the window (open-oasis), the cost of the ``dynamic`` context policy, and the
memory of a 10,000-frame rollout.

Speed does not depend on the weights, so without ``--ckpt`` a randomly initialised model of the
quickstart size is timed: ``dynamics_quickstart`` over the ``ae_arena`` autoencoder's latents
(9 actions), prompted with random frames. Every figure is a median of per-frame times measured
through ``WorldModelEnv.step`` (generation = the denoising calls + the call that commits the
frame to the cache; decoding = the autoencoder's decoder on that one frame). Configurations
that are compared are stepped in turn, frame by frame, so that the load of a shared machine
hits them alike; the rollout timed at frame 2,000 is fast-forwarded there with 1-step sampling.

Threads: a cached step runs one frame (64 tokens) per model call, too small to split well over
cores, and on a busy machine a second OpenMP thread mostly waits at barriers. The figures are
timed at ``--threads`` (default 1), frames/s also at each count in ``--compare-threads``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import time

import numpy as np
import torch
from tqdm import tqdm

from farsight.bench import Row
from farsight.dynamics_config import ObjectiveConfig
from farsight.envs.arena import ACTION_MEANINGS
from farsight.models.autoencoder import Autoencoder
from farsight.models.dynamics import DynamicsModel
from farsight.precision import resolve_device
from farsight.sampling import SamplingConfig, generate
from farsight.sampling.config import model_sampling
from farsight.train.recipes.autoencoder import ae_arena
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES
from farsight.world_env import WorldModelEnv, WorldModelParts
from farsight.world_model import load_world_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", help="time this dynamics checkpoint instead of a random model")
    p.add_argument(
        "--steps", type=int, default=0, help="denoising steps (default: the model's own)"
    )
    p.add_argument("--sampler", default="ddim", help="ddim, euler or heun")
    p.add_argument("--long", type=int, default=2000, help="frame whose step time is compared")
    p.add_argument("--near", type=int, default=50, help="early frame it is compared with")
    p.add_argument("--span", type=int, default=60, help="frames timed around each of the two")
    p.add_argument("--frames", type=int, default=24, help="frames timed per short measurement")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main figures")
    p.add_argument(
        "--compare-threads", default="2", help="also time frames/s at these thread counts"
    )
    p.add_argument(
        "--memory-frames",
        type=int,
        default=10_000,
        help="length of the rollout whose memory is tracked (0: skip)",
    )
    p.add_argument(
        "--memory-steps",
        type=int,
        default=1,
        help="denoising steps of that rollout (memory does not depend on them; time does)",
    )
    p.add_argument(
        "--oasis-window",
        type=int,
        default=16,
        help="window of the open-oasis comparison: when the model's own window differs, a "
        "randomly initialised copy of it with this window is timed too",
    )
    p.add_argument("--device", default="cpu")


def resident_bytes() -> int:
    """This process's resident set size now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource  # lazy: Unix only, needed only where the Linux path is unavailable

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def quickstart_world_model(device: torch.device):
    """A randomly initialised world model of the quickstart recipe's shape (timing only)."""
    torch.manual_seed(0)
    autoencoder = Autoencoder(ae_arena().model)
    cfg = DYNAMICS_RECIPES.get("dyn_quickstart").model
    cfg.latent_channels = autoencoder.cfg.channels
    cfg.num_actions = len(ACTION_MEANINGS)
    dynamics = DynamicsModel(cfg)
    return WorldModelParts(
        dynamics=dynamics.to(device).eval().requires_grad_(False),
        autoencoder=autoencoder.to(device).eval().requires_grad_(False),
        objective=ObjectiveConfig(),
        meta={"env_id": "arena", "size": 64, "action_meanings": list(ACTION_MEANINGS)},
        context_frames=16,
    )


def run(args: argparse.Namespace) -> list[Row]:
    device = resolve_device(args.device)
    if args.ckpt:
        world_model = load_world_model(args.ckpt, device)
        what = f"checkpoint {args.ckpt}"
    else:
        world_model = quickstart_world_model(device)
        what = "random dynamics_quickstart + ae_arena"
    cfg = world_model.dynamics.cfg
    objective = world_model.objective
    if not args.steps:
        args.steps = model_sampling(world_model).steps
    params = sum(p.numel() for p in world_model.dynamics.parameters()) / 1e6
    h, w = cfg.latent_size
    what += (
        f" ({params:.1f}M params, {h}x{w}x{cfg.latent_channels} latents, window {cfg.window}, "
        f"{args.steps} {args.sampler} steps)"
    )
    rng = np.random.default_rng(0)
    side = h * world_model.autoencoder.cfg.factor
    prompt = rng.integers(0, 256, (world_model.context_frames, side, side, 3), np.uint8)
    actions = rng.integers(0, cfg.num_actions, args.long + 100)

    def make_env(**sampling) -> WorldModelEnv:
        sampling = SamplingConfig(**{"steps": args.steps, "sampler": args.sampler, **sampling})
        env = WorldModelEnv(world_model, sampling=sampling, seed=0)
        env.reset(options={"prompt": prompt})
        return env

    def advance_to(env: WorldModelEnv, frame: int) -> None:
        """Fast-forward with 1-step sampling and no decoding: the state a later step sees (a
        full ring at a large frame index) is the same however the frames were made."""
        count = frame - env.state.next_frame
        if count > 0:
            generate(
                env.model,
                env.state,
                torch.as_tensor(actions[:count], device=device)[None],
                SamplingConfig(steps=1),
                prediction=objective.prediction,
                schedule=objective.schedule,
                context_level=objective.context_level,
            )

    def interleaved(envs: dict[str, WorldModelEnv], count: int, warmup: int = 2) -> dict:
        """Median per-frame ms (step, generate, decode) of each env, stepping the envs in turn
        so that a change in the machine's load hits all of them alike."""
        infos = {name: [] for name in envs}
        for i in range(warmup + count):
            for name, env in envs.items():
                info = env.step(int(actions[i]))[4]
                if i >= warmup:
                    infos[name].append(info)
        keys = ("step_ms", "generate_ms", "decode_ms")
        return {
            name: {k: statistics.median(info[k] for info in got) for k in keys}
            for name, got in infos.items()
        }

    threads_before = torch.get_num_threads()
    rows: list[Row] = []
    try:
        torch.set_num_threads(args.threads)
        note = f"{what}; {args.threads} thread(s), load {os.getloadavg()[0]:.1f} at start"

        # Flatness: one rollout around frame `near`, another fast-forwarded to frame `long`,
        # their steps (timed sampler, decoding included) interleaved.
        t_start = time.perf_counter()
        half = args.span // 2
        early, late = make_env(), make_env()
        advance_to(early, args.near - half)
        advance_to(late, args.long - half)
        flat = interleaved({"early": early, "late": late}, 2 * half, warmup=0)
        near, far = flat["early"]["step_ms"], flat["late"]["step_ms"]
        flat_seconds = time.perf_counter() - t_start
        window_note = f"median of the {2 * half} frames from frame {{}}, decoding included"
        rows.append(
            Row(f"step time at frame {args.near}", near, "ms", window_note.format(args.near - half))
        )
        rows.append(
            Row(f"step time at frame {args.long}", far, "ms", window_note.format(args.long - half))
        )
        rows.append(
            Row(
                f"step time frame {args.long} / frame {args.near}",
                far / near,
                "x",
                f"goal <= 1.1; the two rollouts stepped in turn ({flat_seconds:.0f} s with the "
                "1-step fast-forward)",
            )
        )
        rows.append(
            Row(
                f"rollout state at frame {args.long} / frame {args.near}",
                late.state.tensor_bytes() / early.state.tensor_bytes(),
                "x",
                f"tensor bytes of cache ring + recent latents: {early.state.tensor_bytes():,} -> "
                f"{late.state.tensor_bytes():,}",
            )
        )

        # The default sampler against recomputing the window (open-oasis) and `dynamic`.
        timed = interleaved(
            {
                "stable": late,
                "oasis": make_env(kv_cache=False),
                "dynamic": make_env(context="dynamic"),
            },
            args.frames,
        )
        stable, oasis, dynamic = timed["stable"], timed["oasis"], timed["dynamic"]
        rows.append(
            Row(
                "frames/s with decoding (stable, KV cache)",
                1000 / stable["step_ms"],
                "frames/s",
                note,
            )
        )
        rows.append(
            Row(
                "generation per frame (stable, KV cache)",
                stable["generate_ms"],
                "ms",
                f"{args.steps} denoising calls, the first also committing the frame before",
            )
        )
        rows.append(
            Row("decoding per frame", stable["decode_ms"], "ms", f"one {side}x{side} frame")
        )
        for key, label in (("generate_ms", "generation only"), ("step_ms", "with decoding")):
            rows.append(
                Row(
                    f"KV cache speedup over {cfg.window}-frame recompute ({label})",
                    oasis[key] / stable[key],
                    "x",
                    f"open-oasis style: no cache, the window rerun at each of {args.steps} steps; "
                    f"{oasis[key]:.1f} vs {stable[key]:.1f} ms/frame; goal >= 4",
                )
            )
        rows.append(
            Row(
                "dynamic / stable generation time",
                dynamic["generate_ms"] / stable["generate_ms"],
                "x",
                f"dynamic renoises the context at every step, so it recomputes the {cfg.window}-"
                f"frame window each step: {dynamic['generate_ms']:.1f} vs "
                f"{stable['generate_ms']:.1f} ms/frame",
            )
        )
        rows.append(
            Row("frames/s with decoding (dynamic)", 1000 / dynamic["step_ms"], "frames/s", "")
        )
        if args.oasis_window and args.oasis_window != cfg.window:
            rows.extend(oasis_window_rows(world_model, args, prompt, actions))

        # Other step counts (interleaved with each other).
        sweep = sorted({1, 2, 4, 8} - {args.steps})
        timed = interleaved({str(n): make_env(steps=n) for n in sweep}, args.frames)
        for n in sweep:
            rows.append(
                Row(
                    f"frames/s with decoding, {n} step(s)",
                    1000 / timed[str(n)]["step_ms"],
                    "frames/s",
                    f"stable, KV cache, {args.threads} thread(s)",
                )
            )

        # Other thread counts: short, and capped in time (a second thread on a busy machine
        # can be tens of times slower).
        for threads in [int(t) for t in args.compare_threads.split(",") if t.strip()]:
            if threads == args.threads:
                continue
            torch.set_num_threads(threads)
            env, times, t0 = make_env(), [], time.perf_counter()
            while len(times) < args.frames and time.perf_counter() - t0 < 20:
                times.append(env.step(int(actions[len(times)]))[4]["step_ms"])
            rows.append(
                Row(
                    f"frames/s with decoding, {threads} threads",
                    1000 / statistics.median(times),
                    "frames/s",
                    f"{args.steps} steps, stable, KV cache; {len(times)} frames; load "
                    f"{os.getloadavg()[0]:.1f}",
                )
            )
        if args.memory_frames > 0:
            torch.set_num_threads(args.threads)
            rows.extend(memory_rows(make_env(steps=args.memory_steps), args.memory_frames, rng))
    finally:
        torch.set_num_threads(threads_before)
    return rows


def oasis_window_rows(world_model, args, prompt: np.ndarray, actions: np.ndarray) -> list[Row]:
    """The KV-cache speedup at open-oasis's window: a copy of the model with ``--oasis-window``
    (random weights: speed does not depend on them), cached vs recomputing that window."""

    window = args.oasis_window
    dyn_cfg = dataclasses.replace(copy.deepcopy(world_model.dynamics.cfg), window=window)
    torch.manual_seed(0)
    device = next(world_model.dynamics.parameters()).device
    dynamics = DynamicsModel(dyn_cfg).to(device).eval().requires_grad_(False)
    model = dataclasses.replace(world_model, dynamics=dynamics)
    model.context_frames = window
    prompt = np.concatenate([prompt] * (1 + window // len(prompt)))[-window:]
    envs = {}
    for name, kv in (("cached", True), ("recompute", False)):
        sampling = SamplingConfig(steps=args.steps, sampler=args.sampler, kv_cache=kv)
        envs[name] = WorldModelEnv(model, sampling=sampling, seed=0)
        envs[name].reset(options={"prompt": prompt})
    times = {name: [] for name in envs}
    for i in range(2 + args.frames):
        for name, env in envs.items():
            info = env.step(int(actions[i]))[4]
            if i >= 2:
                times[name].append(info["generate_ms"])
    cached, recompute = (statistics.median(times[n]) for n in ("cached", "recompute"))
    return [
        Row(
            f"KV cache speedup over {window}-frame recompute (generation only)",
            recompute / cached,
            "x",
            f"a copy of the model with window {window} (random weights), its ring full from the "
            f"prompt; {recompute:.1f} vs {cached:.1f} ms/frame; goal >= 4",
        )
    ]


def memory_rows(env, frames: int, rng: np.random.Generator) -> list[Row]:
    """Step one rollout ``frames`` frames through ``WorldModelEnv.step`` (decoding included),
    reading the process's resident memory and the rollout state's tensor bytes as it goes."""
    marks = sorted({min(1000, frames), frames // 2, frames})
    seen, t0 = {}, time.perf_counter()
    actions = rng.integers(0, env.action_space.n, frames)
    for i in tqdm(range(frames), desc="memory rollout", unit="frame", leave=False):
        env.step(int(actions[i]))
        if i + 1 in marks:
            seen[i + 1] = (resident_bytes(), env.state.tensor_bytes())
    seconds = time.perf_counter() - t0
    first, last = marks[0], marks[-1]
    trace = ", ".join(f"{m:,}: {seen[m][0] / 2**20:.1f} MiB" for m in marks)
    return [
        Row(
            f"resident memory at frame {last:,} / frame {first:,}",
            seen[last][0] / seen[first][0],
            "x",
            f"one rollout through WorldModelEnv.step, decoding included ({seconds:.0f} s); "
            f"RSS {trace}",
        ),
        Row(
            f"rollout state at frame {last:,} / frame {first:,}",
            seen[last][1] / seen[first][1],
            "x",
            f"cache ring + recent latents: {seen[first][1]:,} -> {seen[last][1]:,} bytes",
        ),
    ]
