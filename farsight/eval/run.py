"""Open-loop evaluation of a trained world model on held-out episodes (``farsight eval``).

For each of N clips of the split (episode, start), through ``WorldModelEnv`` (the object play
uses):

1. prompt the model with the clip's first P true frames and generate H frames from the
   episode's true actions: x_hat;
2. prompt it again, with the same prompt and the same generator seed, and generate H frames
   from uniformly random actions (seeded): x_hat'. The shared seed means the two rollouts draw
   the same noise, so their difference is the actions' doing only (common random numbers: a
   model that ignores its actions gives Delta-PSNR exactly 0, not 0 plus sampling noise).

Measured per horizon h = 1, 2, 4, ... <= H (horizon h is the h-th generated frame): PSNR,
SSIM and MSE at full resolution and pooled by 4 and 8, the MSE of the generated latents
against the encoder's latents of the true frames, Genie's Delta_h PSNR
= PSNR(x, x_hat) - PSNR(x, x_hat') (highlighted at t = 4), and on the arena (a store with
``state.player`` / ``state.camera`` / ``state.objects``) the player- and object-position
error read back from the generated pixels. On a store of a game with a RAM map
(``farsight.envs.atari_ram``: Breakout, Pong; positions recorded as ``state.object_*``, or
read from ``state.ram``), per named object: position error, hit, miss and measured rates,
the PSNR in a window around the object, and the same window PSNR of the autoencoder's
reconstruction of the true frames beside its whole-frame PSNR (``ae_psnr``): whether the
autoencoder keeps the ball at all, which bounds what any dynamics model on it can show
(``farsight.eval.positions`` says how objects are found in generated frames). The report
puts every object metric beside copy-last-frame on the same clips.

Clips: the split's episodes are cut into non-overlapping windows of P + H frames; windows are
taken round-robin over episodes (every episode's first window, then every second one, ...)
in an order shuffled by the seed, so a few clips still cover many episodes. Everything (clips,
random actions, generator seeds, bootstrap) is a function of the seed: same seed, same files.

Output (``write_eval``): metrics.json / metrics.csv (one row per metric, scale, horizon, with
a 95% bootstrap interval over clips), summary.json, one PNG curve per (metric, scale),
strip.png (truth, true actions, random actions), rollout.npz (the first clips' frames, for the
ablation report's strips) and README.md, written last: its presence marks a finished eval.

Dimension legend: N clips, P prompt frames, H generated frames, C h w latent channels and grid.
"""

from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from farsight.config import apply_overrides
from farsight.data.store import EpisodeStore
from farsight.errors import UsageError
from farsight.eval.metrics import MetricRow, delta_psnr, horizons, rollout_metrics
from farsight.eval.positions import (
    ObjectState,
    SceneObjects,
    object_metrics,
    position_metrics,
    scene_objects,
    window_psnr_rows,
)
from farsight.eval.report import (
    markdown_table,
    row_to_json,
    summarize,
    summary_table,
    write_report,
    write_strip,
)
from farsight.io import atomic_write, atomic_write_json
from farsight.sampling.config import SamplingConfig, model_sampling
from farsight.sampling.frame_path import path_class
from farsight.world_env import WorldModelEnv
from farsight.world_model import load_world_model

ARENA_STATE_KEYS = ("state.player", "state.camera", "state.objects")
DONE_FILE = "README.md"
"""Written last by ``write_eval``: an eval folder holding it is complete."""
ROLLOUT_FILE = "rollout.npz"
COPY_LABEL = "(copy last frame)"
"""Variant label of the reference predictor that repeats the last prompt frame."""
REFERENCE_FILE = "reference.json"
"""Every metric of the copy-last-frame reference on the same clips, as metrics.json's rows."""
AE_LABEL = "(autoencoder)"
"""Variant label of the autoencoder's reconstruction of the true frames (objects table)."""
REFERENCE_TABLE = {
    ("psnr", 1),
    ("psnr", 8),
    ("ssim", 1),
    ("player_error", 1),
    ("player_hit_rate", 1),
    ("object_error", 1),
    ("object_hit_rate", 1),
}
OBJECT_TABLE_METRICS = ("hit_rate", "error", "miss_rate", "measured", "window_psnr")
"""Per-object metrics (``<name>_<metric>``) of the report's objects table."""
STRIP_CLIPS = 2
"""Clips whose frames are kept in rollout.npz (strips of the ablation report)."""


@dataclass
class EvalConfig:
    split: str = "test"
    clips: int = 8
    """Clips to roll out (``--episodes``): windows of P + H frames of the split's episodes."""
    horizon: int = 64
    """H: frames generated per clip; lowered (with a note) to what the episodes allow."""
    seed: int = 0
    prompt_frames: int = 0
    """P: true frames given as context; 0: the model's training clip length (<= its window)."""
    delta_t: int = 4
    """Genie reports Delta-PSNR at t = 4; always measured (also per horizon)."""
    scales: tuple[int, ...] = (1, 4, 8)
    n_boot: int = 1000
    sampling: SamplingConfig | None = None
    """None: the model's own (its run config's ``sampling``)."""
    sampling_overrides: list[str] = field(default_factory=list)
    """``field=value`` edits applied on top (the ``--sampling.*`` flags)."""


@dataclass
class Clip:
    episode: int
    start: int


@dataclass
class EvalResult:
    rows: list[MetricRow]
    meta: dict[str, Any]
    gt: np.ndarray
    """(N, H, H_px, W_px, 3) uint8 true frames after the prompt."""
    gen: np.ndarray
    """(N, H, ...) uint8 generated from the true actions."""
    gen_random: np.ndarray
    """(N, H, ...) uint8 generated from random actions."""
    prompts: np.ndarray
    """(N, P, ...) uint8 prompt frames."""
    store: Any = None
    """The EpisodeStore the clips came from."""


def pick_clips(store, split: str, length: int, count: int, seed: int) -> list[Clip]:
    """``count`` non-overlapping windows of ``length`` frames from the split's episodes,
    round-robin over episodes in a seeded order (see the module docstring)."""
    episodes = store.asked_split(split)
    rng = np.random.default_rng([seed, 0xC11B])
    per_episode = []
    for ep in episodes:
        n = store.episodes[ep].length // length
        starts = [i * length for i in range(n)]
        rng.shuffle(starts)
        per_episode.append((ep, starts))
    order = rng.permutation(len(per_episode))
    clips: list[Clip] = []
    rank = 0
    while len(clips) < count and any(rank < len(s) for _, s in per_episode):
        for i in order:
            ep, starts = per_episode[i]
            if rank < len(starts) and len(clips) < count:
                clips.append(Clip(int(ep), int(starts[rank])))
        rank += 1
    if not clips:
        longest = max(store.episodes[ep].length for ep in episodes)
        raise UsageError(
            f"no {split!r} episode of store {store.path} has {length} frames (prompt + horizon); "
            f"the longest has {longest}: lower --horizon"
        )
    return clips


class LatentRecordingEnv(WorldModelEnv):
    """WorldModelEnv that keeps the latents it decodes: the generated latents, which
    latent MSE compares with the encoder's latents of the true frames."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.decoded: list = []

    def decode(self, latents):
        self.decoded.append(latents.detach().float().cpu())
        return super().decode(latents)

    def take_latents(self) -> np.ndarray:
        """(G, C, h, w) latents decoded since the last call."""
        out = torch.cat(self.decoded).numpy()
        self.decoded = []
        return out


def reference_rows(store, meta: dict[str, Any], scales=(1, 4, 8), n_boot: int = 1000):
    """The same metrics for the trivial predictor that repeats the last prompt frame, on the
    clips an eval used (``meta`` of its metrics.json): what a world model must beat. Rows are
    labelled with variant ``COPY_LABEL``; no latent MSE and no Delta-PSNR (no model)."""
    p, horizon, seed = int(meta["prompt_frames"]), int(meta["horizon"]), int(meta["seed"])
    arena = all(k in store.arrays for k in ARENA_STATE_KEYS)
    objects = scene_objects(store)
    object_keys = objects.state_keys(store.arrays) if objects is not None else ()
    keys = ("frames", *(ARENA_STATE_KEYS if arena else ()), *object_keys)
    reads = [store.read(c["episode"], c["start"], p + horizon, keys=keys) for c in meta["clips"]]
    gt = np.stack([r["frames"][p:] for r in reads])
    copy = np.repeat(np.stack([r["frames"][p - 1 : p] for r in reads]), horizon, axis=1)
    delta_t = int(meta.get("delta_t", 4))
    hs = horizons(horizon, (delta_t,) if 1 <= delta_t <= horizon else ())
    rows = rollout_metrics(gt, copy, horizons=hs, scales=scales, n_boot=n_boot, seed=seed)
    if arena:
        state = {k: np.stack([r[k][p:] for r in reads]) for k in ARENA_STATE_KEYS}
        rows += position_metrics(
            copy,
            state["state.player"],
            state["state.camera"],
            state["state.objects"],
            gt_frames=gt,
            horizons=hs,
            n_boot=n_boot,
            seed=seed,
        )
    if objects is not None:
        truth = ObjectState.stack([objects.state(r)[p:] for r in reads])
        rows += object_metrics(
            copy, truth, objects, gt_frames=gt, horizons=hs, n_boot=n_boot, seed=seed
        )
    return [dataclasses.replace(r, variant=COPY_LABEL) for r in rows]


def _check_store(world_model, store, frame_size: tuple[int, int], ckpt: str) -> None:
    shape = tuple(store.arrays["frames"][0]) if "frames" in store.arrays else None
    if shape is None:
        raise UsageError(f"store {store.path} holds no 'frames' array")
    if shape != (*frame_size, 3):
        raise UsageError(
            f"store {store.path} has frames {shape}, the model {ckpt} makes {(*frame_size, 3)}"
        )
    n = world_model.dynamics.cfg.num_actions
    names = (store.meta.get("env") or {}).get("action_meanings")
    if names is not None and len(names) != n:
        raise UsageError(
            f"store {store.path} has {len(names)} actions ({store.path / 'manifest.json'} "
            f"env.action_meanings), the model {ckpt} takes {n}"
        )


def evaluate(
    world_model, store, cfg: EvalConfig, *, ckpt: str = "", progress: bool = True
) -> EvalResult:
    """Roll out ``cfg.clips`` clips of ``store`` (true and random actions) and measure them."""
    model_cfg = world_model.dynamics.cfg
    default_p = max(1, min(world_model.context_frames, model_cfg.window))
    p = cfg.prompt_frames or default_p
    if p < 1 or cfg.horizon < 1 or cfg.clips < 1:
        raise UsageError(
            f"prompt frames {p}, --horizon {cfg.horizon} and --episodes {cfg.clips} must be >= 1"
        )
    sampling = apply_overrides(
        cfg.sampling or model_sampling(world_model), list(cfg.sampling_overrides)
    )
    env = LatentRecordingEnv(world_model, store, sampling=sampling, prompt_frames=p, seed=cfg.seed)
    # The env's view of the store: for a model trained on latent (or no) actions, its
    # ``actions`` are those labels, which are then the "true" actions to roll out with.
    store = env.store
    try:
        episodes = store.split_episodes(cfg.split)
    except ValueError as e:
        raise UsageError(f"--split: {e}") from None
    if not episodes:
        raise UsageError(f"store {store.path} has no {cfg.split!r} episodes")
    longest = max(store.episodes[ep].length for ep in episodes)
    horizon = min(cfg.horizon, longest - p)
    if horizon < 1:
        raise UsageError(f"the {cfg.split!r} episodes ({longest} frames) cannot hold {p} + 1")
    clips = pick_clips(store, cfg.split, p + horizon, cfg.clips, cfg.seed)

    _check_store(world_model, store, env.frame_size, ckpt or "given")
    arena = all(k in store.arrays for k in ARENA_STATE_KEYS)
    objects = scene_objects(store)
    object_keys = objects.state_keys(store.arrays) if objects is not None else ()
    keys = ("frames", "actions", *(ARENA_STATE_KEYS if arena else ()), *object_keys)
    n_actions = int(env.action_space.n)

    gt, gen, rnd, prompts, gt_lat, gen_lat = [], [], [], [], [], []
    states: dict[str, list[np.ndarray]] = {k: [] for k in ARENA_STATE_KEYS}
    object_states: list[ObjectState] = []
    recon: list[np.ndarray] = []
    t0 = time.perf_counter()
    bar = tqdm(clips, desc="eval", unit="clip", disable=not progress, dynamic_ncols=True)
    for i, clip in enumerate(bar):
        truth = store.read(clip.episode, clip.start, p + horizon, keys=keys)
        # Per-clip streams: a clip's rollouts do not depend on which clips came before it.
        clip_seed = int(np.random.SeedSequence([cfg.seed, i]).generate_state(1)[0])
        actions = truth["actions"][p - 1 : p - 1 + horizon]
        random_actions = np.random.default_rng([cfg.seed, i, 1]).integers(0, n_actions, horizon)
        options = {"prompt": clip.episode, "start": clip.start}
        env.reset(seed=clip_seed, options=options)
        env.decoded = []
        gen.append(env.generate(actions))
        gen_lat.append(env.take_latents())
        env.reset(seed=clip_seed, options=options)
        rnd.append(env.generate(random_actions))
        env.decoded = []
        gt.append(truth["frames"][p:])
        prompts.append(truth["frames"][:p])
        true_latents = env.encode(truth["frames"][p:])[0]
        gt_lat.append(true_latents.float().cpu().numpy())
        if arena:
            for k in ARENA_STATE_KEYS:
                states[k].append(truth[k][p:])
        if objects is not None:
            object_states.append(objects.state(truth)[p:])
        if arena or objects is not None:
            # What the autoencoder keeps of the true frames: the ceiling of any generation.
            recon.append(env.decode(true_latents))
            env.decoded = []
    seconds = time.perf_counter() - t0
    gt_a, gen_a, rnd_a = np.stack(gt), np.stack(gen), np.stack(rnd)
    recon_a = np.stack(recon) if recon else None

    extra = (cfg.delta_t,) if 1 <= cfg.delta_t <= horizon else ()
    hs = horizons(horizon, extra)
    rows = rollout_metrics(
        gt_a,
        gen_a,
        horizons=hs,
        scales=cfg.scales,
        gt_latents=np.stack(gt_lat),
        gen_latents=np.stack(gen_lat),
        n_boot=cfg.n_boot,
        seed=cfg.seed,
    )
    rows += delta_psnr(gt_a, gen_a, rnd_a, horizons=hs, n_boot=cfg.n_boot, seed=cfg.seed)
    if arena:

        def readback(frames: np.ndarray) -> list[MetricRow]:
            return position_metrics(
                frames,
                np.stack(states["state.player"]),
                np.stack(states["state.camera"]),
                np.stack(states["state.objects"]),
                gt_frames=gt_a,
                horizons=hs,
                n_boot=cfg.n_boot,
                seed=cfg.seed,
            )

        rows += readback(gen_a)
        # The same readback of the autoencoder's reconstructions (``ae_*``): whether the
        # latents keep the player and the discs at all.
        rows += [dataclasses.replace(r, metric="ae_" + r.metric) for r in readback(recon_a)]
    if objects is not None:
        rows += _object_rows(
            objects, gt_a, gen_a, recon_a, ObjectState.stack(object_states), hs, cfg
        )
    generated = 2 * len(clips) * horizon
    meta = {
        "ckpt": ckpt,
        "step": int(getattr(world_model, "step", 0)),
        "store": str(store.path),
        "split": cfg.split,
        "clips": [dataclasses.asdict(c) for c in clips],
        "prompt_frames": p,
        "horizon": horizon,
        "horizon_asked": cfg.horizon,
        "seed": cfg.seed,
        "delta_t": cfg.delta_t,
        "arena_positions": arena,
        "objects": list(objects.names) if objects is not None else [],
        "objective": world_model.objective.kind,
        "sampling": dataclasses.asdict(env.sampling),
        "rollout_seconds": round(seconds, 3),
        "generated_frames": generated,
        "frames_per_second": round(generated / max(seconds, 1e-9), 2),
    }
    return EvalResult(rows, meta, gt_a, gen_a, rnd_a, np.stack(prompts), store)


def _object_rows(
    objects: SceneObjects,
    gt: np.ndarray,
    gen: np.ndarray,
    recon: np.ndarray,
    truth: ObjectState,
    hs: tuple[int, ...],
    cfg: EvalConfig,
) -> list[MetricRow]:
    """Named-object rows of the model (``<name>_*``) and of the autoencoder's reconstruction
    of the true frames (``ae_psnr``, ``ae_<name>_*``: whether the latents keep an object at
    all, the ceiling of any generation on them)."""
    rows = object_metrics(
        gen, truth, objects, gt_frames=gt, horizons=hs, n_boot=cfg.n_boot, seed=cfg.seed
    )
    kept = object_metrics(
        recon, truth, objects, gt_frames=gt, horizons=hs, n_boot=cfg.n_boot, seed=cfg.seed
    )
    rows += [
        dataclasses.replace(r, metric="ae_" + r.metric)
        for r in kept
        if not r.metric.endswith("_window_psnr")  # below, with the whole frame's
    ]
    rows += window_psnr_rows(
        gt,
        recon,
        truth,
        objects.names,
        horizons=hs,
        prefix="ae_",
        whole_frame=True,
        n_boot=cfg.n_boot,
        seed=cfg.seed,
    )
    return rows


def object_table_rows(
    rows: list[MetricRow], reference: list[MetricRow], names: list[str]
) -> list[MetricRow]:
    """The objects table's rows: per object, the model's, copy-last-frame's and (window PSNR)
    the autoencoder's, the latter relabelled from ``ae_*`` to variant ``AE_LABEL``."""
    wanted = {f"{n}_{m}" for n in names for m in OBJECT_TABLE_METRICS} | {"psnr"}
    out = [r for r in rows if r.metric in wanted and r.scale == 1]
    out += [r for r in reference if r.metric in wanted and r.scale == 1]
    for r in rows:
        if r.metric.startswith("ae_") and r.metric[3:] in wanted:
            out.append(dataclasses.replace(r, metric=r.metric[3:], variant=AE_LABEL))
    return out


def sampling_text(meta: dict[str, Any]) -> str:
    """How an eval's rollouts were sampled, from its metrics.json ``meta``."""
    s = meta.get("sampling") or {}
    if not s:
        return "-"
    return path_class(meta.get("objective", "")).describe(s)


def strip_horizons(horizon: int) -> list[int]:
    """Columns of a rollout strip: powers of two up to the horizon (at most 8 of them)."""
    return list(horizons(horizon))[-8:]


def _value(rows: list[MetricRow], metric: str, h: int, scale: int = 1) -> MetricRow | None:
    return next(
        (r for r in rows if r.metric == metric and r.horizon == h and r.scale == scale), None
    )


def _ci_text(r: MetricRow | None) -> str:
    if r is None:
        return "-"
    return f"{r.value:.3g} [{r.ci_low:.3g}, {r.ci_high:.3g}]"


def write_eval(
    result: EvalResult, out: str | Path, title: str = "Evaluation", curves: bool = True
) -> Path:
    """All of an eval's files into ``out`` (see the module docstring); README.md last.
    ``curves=False`` leaves out the per-metric curve PNGs (the slow part)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = result.meta
    keep = min(STRIP_CLIPS, len(result.gt))
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        gt=result.gt[:keep],
        gen=result.gen[:keep],
        gen_random=result.gen_random[:keep],
        prompts=result.prompts[:keep],
    )
    atomic_write(out / ROLLOUT_FILE, lambda f: f.write(buf.getvalue()))
    first = meta["clips"][0]
    strip = write_strip(
        out / "strip.png",
        result.gt[0],
        {"true actions": result.gen[0], "random actions": result.gen_random[0]},
        strip_horizons(meta["horizon"]),
        title=f"episode {first['episode']}, prompt frames {first['start']}.."
        f"{first['start'] + meta['prompt_frames'] - 1}",
    )
    setup = markdown_table(
        ["setting", "value"],
        [
            ["checkpoint", f"`{meta['ckpt']}` (step {meta['step']})"],
            ["data", f"`{meta['store']}`, split {meta['split']}"],
            ["clips", f"{len(meta['clips'])} (episode:start " + _clip_list(meta["clips"]) + ")"],
            ["prompt / generated frames", f"{meta['prompt_frames']} / {meta['horizon']}"],
            ["sampling", sampling_text(meta)],
            ["seed", meta["seed"]],
            [
                "rollout time",
                f"{meta['rollout_seconds']:.1f} s for {meta['generated_frames']} frames "
                f"({meta['frames_per_second']:.1f} frames/s, decoding included)",
            ],
        ],
    )
    t = meta["delta_t"]
    delta = _value(result.rows, "delta_psnr", t)
    control = (
        f"Delta_{t} PSNR = PSNR(x, x_hat) - PSNR(x, x_hat') = {_ci_text(delta)} dB "
        "(95% bootstrap over clips); x_hat' comes from uniformly random actions with the same "
        "prompt and the same noise, so 0 means the actions change nothing."
        if delta is not None
        else f"(horizon {t} not reached)"
    )
    sections = [("Setup", setup), ("Controllability", control)]
    if result.store is not None:
        all_reference = reference_rows(result.store, meta, n_boot=200)
        # Machine-readable beside metrics.json: every figure has its trivial reference.
        atomic_write_json(out / REFERENCE_FILE, {"rows": [row_to_json(r) for r in all_reference]})
        reference = [r for r in all_reference if (r.metric, r.scale) in REFERENCE_TABLE]
        reference += [
            dataclasses.replace(r, metric=r.metric[3:], variant=AE_LABEL)
            for r in result.rows
            if r.metric.startswith("ae_") and (r.metric[3:], r.scale) in REFERENCE_TABLE
        ]
        text = (
            "The same clips predicted by repeating the last prompt frame (no model): a world "
            "model that does not beat this has learned no motion. `(autoencoder)`: the "
            "autoencoder's reconstruction of the true frames, the best any generation can "
            "do.\n\n"
        )
        sections.append(
            ("Reference: copy the last prompt frame", text + summary_table(summarize(reference)))
        )
        names = list(meta.get("objects") or [])
        if names:
            table = object_table_rows(result.rows, all_reference, names)
            sections.append(("Objects", OBJECTS_TEXT + summary_table(summarize(table))))
    write_report(
        out,
        result.rows,
        title=title,
        strips=[strip],
        sections=sections,
        meta=meta,
        curves=curves,
    )
    return out / DONE_FILE


OBJECTS_TEXT = (
    "Ground-truth positions from the emulator's RAM (farsight/envs/atari_ram.py). An object "
    "is looked for by its colour within 1/8 of the frame of its true position and found when "
    "a blob of at least half its true area is there (farsight/eval/positions.py); "
    "`measured` is the share of visible sightings the same readback recovers from the true "
    "frame (within 1/64 of the frame), the only ones scored. `hit_rate`: found within 1/32 "
    "of the frame; `error` in px over found ones; `window_psnr`: PSNR in a square of 1/8 of "
    "the frame centred on the object. `(autoencoder)` is the autoencoder's reconstruction of "
    "the true frames, read back the same way: a hit rate below 1, or a window PSNR far below "
    "its whole-frame `psnr`, means the autoencoder loses the object, and no dynamics model "
    "on it can show it more often.\n\n"
)


def _clip_list(clips: list[dict]) -> str:
    text = ", ".join(f"{c['episode']}:{c['start']}" for c in clips[:12])
    return text + (", ..." if len(clips) > 12 else "")


def eval_checkpoint(
    ckpt: str | Path,
    data: str | Path,
    out: str | Path,
    cfg: EvalConfig,
    *,
    device: str = "cpu",
    progress: bool = True,
) -> EvalResult:
    """Load a world model and a store, evaluate, write the files; the command's work."""
    world_model = load_world_model(ckpt, device)
    store = EpisodeStore(data, verify="size")
    result = evaluate(world_model, store, cfg, ckpt=str(ckpt), progress=progress)
    write_eval(result, out)
    return result
