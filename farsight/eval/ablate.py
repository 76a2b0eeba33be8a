"""The ablation grid (``farsight ablate``): train and evaluate variants x seeds, then report.

    OUT/ablate.json                   the grid's recipe, overrides, data and eval settings
    OUT/<variant>/flops.json          FLOPs of one training step (FlopCounterMode), once
    OUT/<variant>/seed<k>/            the training run (checkpoint, metrics.jsonl, tb/)
    OUT/<variant>/seed<k>/run.json    steps, training and evaluation wall time
    OUT/<variant>/seed<k>/eval/       ``farsight eval``'s files; README.md marks it finished
    OUT/README.md, *.png, metrics.*   the report

Equal compute means equal optimizer steps: every run trains the recipe's ``train.steps``
with the same batch size and clip length (the grid refuses a ``train.max_minutes`` budget,
which would make the step count depend on how busy the machine is). The variants differ in
FLOPs per step (the far heads cost extra), so the report gives FLOPs per step and the wall
time of each run next to the metrics.

Resuming: a run whose eval/README.md exists is skipped; a run with a checkpoint but no eval
continues training from the checkpoint (exactly: batches and noise are functions of the step),
then is evaluated; a run folder without a checkpoint is started over. Rerunning with other
recipe, overrides, data or eval settings into the same OUT is refused (``ablate.json``); adding
variants or seeds is fine.

Seeds: run k trains with ``train.seed = k`` (initialisation, batch order, noise). Every run is
evaluated on the same clips with the same eval seed, so variants are compared on identical
rollout prompts and the seed is the only unit of replication (t intervals over seeds).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from farsight.config import apply_overrides, from_dict
from farsight.errors import UsageError
from farsight.eval.metrics import MetricRow
from farsight.eval.run import (
    DONE_FILE,
    ROLLOUT_FILE,
    EvalConfig,
    evaluate,
    sampling_text,
    write_eval,
)
from farsight.eval.variants import describe, get_variant
from farsight.io import atomic_write_json, read_json

SPEC_FILE = "ablate.json"
RUN_FILE = "run.json"
FLOPS_FILE = "flops.json"
REPORT_METRICS_DROPPED = ("mse",)
"""Left out of the report (still in each run's eval/metrics.csv): PSNR is a monotone function
of the same clip-averaged MSE, so its curves would say nothing new."""


@dataclass
class AblateSpec:
    """What defines a grid; stored in OUT/ablate.json and checked when a grid is resumed."""

    recipe: str
    data: str
    autoencoder: str
    overrides: tuple[str, ...] = ()
    eval: EvalConfig = field(default_factory=EvalConfig)
    token_autoencoder: str = ""
    """FSQ autoencoder whose tokens the MaskGIT variants train on (empty: the grid has none)."""

    def as_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = list(self.overrides)
        d["eval"]["scales"] = list(self.eval.scales)
        return d


@dataclass
class RunRecord:
    variant: str
    seed: int
    steps: int
    train_seconds: float
    eval_seconds: float


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / variant / f"seed{seed}"


def run_config(spec: AblateSpec, variant: str, seed: int):
    """The run config of one cell: recipe, then the grid's overrides, then the variant's edit
    (so a grid-wide override can never undo what a variant ablates), then the seed."""
    from farsight.train.dynamics import DYNAMICS_RECIPES

    cfg = apply_overrides(DYNAMICS_RECIPES.get(spec.recipe), list(spec.overrides))
    cfg.data.path, cfg.data.autoencoder = spec.data, spec.autoencoder
    get_variant(variant)(cfg)
    if cfg.objective.kind == "maskgit":
        if not spec.token_autoencoder:
            raise UsageError(
                f"variant {variant} trains MaskGIT on FSQ tokens: give --token-autoencoder "
                "AE_RUN (an fsq autoencoder of the same store, e.g. recipe ae_fsq)"
            )
        cfg.data.autoencoder = spec.token_autoencoder
    cfg.train.seed = seed
    if cfg.train.max_minutes > 0:
        raise UsageError(
            f"recipe {spec.recipe} sets train.max_minutes={cfg.train.max_minutes}: an ablation "
            "compares equal step counts; override train.max_minutes=0"
        )
    return cfg


def check_spec(out: Path, spec: AblateSpec) -> None:
    """Write OUT/ablate.json, or check the grid being resumed was made with the same spec."""
    path = out / SPEC_FILE
    want = spec.as_json()
    if path.exists():
        have = read_json(path, "ablation spec")
        # A key added to the spec after a grid was made holds its default there.
        defaults = AblateSpec(spec.recipe, spec.data, spec.autoencoder).as_json()
        for key in want:
            if have.get(key, defaults[key]) != want[key]:
                raise UsageError(
                    f"{path} was made with {key}={have.get(key)!r}, this run asks for "
                    f"{want[key]!r}: choose another --out (or remove that grid)"
                )
        return
    atomic_write_json(path, want)


def check_token_autoencoder(path: str) -> None:
    """The MaskGIT variants' autoencoder must make FSQ tokens: checked before any training."""
    from farsight.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, kind="autoencoder")
    kind = ckpt["config"].get("model", {}).get("kind")
    if kind != "fsq":
        raise UsageError(
            f"--token-autoencoder {path} is a {kind!r} autoencoder; the MaskGIT variants need "
            "an fsq one (farsight train autoencoder ae_fsq ...)"
        )


# -- cost ---------------------------------------------------------------------------------------
def step_flops(cfg) -> dict[str, float]:
    """FLOPs of one training step (forward + backward of the objective, FlopCounterMode) and
    the parameter count, for a run config whose latent geometry is filled in (config.json)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from farsight.models.dynamics import DynamicsModel
    from farsight.objectives import make_objective

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DynamicsModel(cfg.model)
        objective = make_objective(cfg.objective)
        m = cfg.model
        frames = cfg.data.clip_len + m.heads.max_offset - 1
        b = cfg.train.batch_size
        # MaskGIT batches hold the FSQ pre-quantization latents, not the backbone's input.
        channels = len(cfg.objective.fsq_levels) or m.latent_channels
        batch = {
            "latents": torch.randn(b, frames, channels, *m.latent_size),
            "actions": torch.randint(0, m.num_actions, (b, frames)),
        }
        counter = FlopCounterMode(display=False)
        with counter:
            loss, _ = objective(model, batch)
            loss.backward()
    return {
        "flops_per_step": float(counter.get_total_flops()),
        "params": float(sum(p.numel() for p in model.parameters())),
        "batch_size": b,
        "clip_len": cfg.data.clip_len,
    }


def trained_config(path: Path):
    from farsight.train.dynamics import DynamicsRunConfig

    stored = read_json(path / "config.json", "run config")
    return from_dict(DynamicsRunConfig, stored["config"], source=str(path / "config.json"))


# -- the grid -----------------------------------------------------------------------------------
def run_one(
    spec: AblateSpec,
    out: Path,
    variant: str,
    seed: int,
    store,
    train_fn: Callable[..., Any],
    progress_line: Callable[[str], None],
) -> RunRecord:
    """Train (or resume) and evaluate one cell; returns its record."""
    from farsight.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from farsight.train.dynamics import load_world_model

    folder = run_dir(out, variant, seed)
    cfg = run_config(spec, variant, seed)
    if (folder / CHECKPOINT_NAME).exists():
        progress_line(f"{variant} seed{seed}: resuming from its checkpoint")
        train_fn(cfg, folder, resume=True, progress=False)
    else:
        if folder.exists():  # interrupted before its first checkpoint: nothing to keep
            shutil.rmtree(folder)
        train_fn(cfg, folder, progress=False)
    ckpt = load_checkpoint(folder, kind="dynamics")
    steps = int(ckpt["step"])
    train_seconds = float(ckpt.get("data", {}).get("train_seconds", float("nan")))
    del ckpt

    flops_path = out / variant / FLOPS_FILE
    if not flops_path.exists():
        atomic_write_json(flops_path, step_flops(trained_config(folder)))

    t0 = time.perf_counter()
    world_model = load_world_model(folder, "cpu")
    result = evaluate(world_model, store, spec.eval, ckpt=str(folder), progress=False)
    eval_seconds = time.perf_counter() - t0
    record = RunRecord(variant, seed, steps, round(train_seconds, 2), round(eval_seconds, 2))
    # run.json before the eval's README.md: a run marked finished always has its record.
    atomic_write_json(folder / RUN_FILE, dataclasses.asdict(record))
    # No per-run curves: the grid's report draws them for all runs at once.
    write_eval(result, folder / "eval", title=f"Evaluation of {variant} seed {seed}", curves=False)
    return record


def is_done(out: Path, variant: str, seed: int) -> bool:
    return (run_dir(out, variant, seed) / "eval" / DONE_FILE).exists()


def run_grid(
    spec: AblateSpec,
    out: str | Path,
    variants: Sequence[str],
    seeds: Sequence[int],
    *,
    progress: bool = True,
    train_fn: Callable[..., Any] | None = None,
) -> list[RunRecord]:
    """Run every (variant, seed) not finished yet, in order, one at a time; then the report.

    ``train_fn`` defaults to ``train_dynamics`` (tests pass a spy to see it is not called for
    finished runs).
    """
    from tqdm import tqdm

    from farsight.data.store import EpisodeStore
    from farsight.train.dynamics import train_dynamics

    out = Path(out)
    for v in variants:
        get_variant(v)  # unknown names fail before anything runs
    if len(set(variants)) != len(variants) or not variants:
        raise UsageError(f"--variants {','.join(variants)}: give each variant once")
    out.mkdir(parents=True, exist_ok=True)
    check_spec(out, spec)
    cfgs = [run_config(spec, v, seeds[0]) for v in variants]
    for cfg in cfgs:  # a bad override or edit fails here, not after hours of training
        cfg.model.heads.validate()
    if any(cfg.objective.kind == "maskgit" for cfg in cfgs):
        check_token_autoencoder(spec.token_autoencoder)
    train_fn = train_fn or train_dynamics
    store = EpisodeStore(spec.data, verify="size")

    grid = [(v, s) for s in seeds for v in variants]  # all variants at seed 0 first
    done = [cell for cell in grid if is_done(out, *cell)]
    bar = tqdm(
        total=len(grid),
        initial=len(done),
        desc="ablate",
        unit="run",
        disable=not progress,
        dynamic_ncols=True,
    )
    write = bar.write if progress else (lambda _: None)
    if done:
        write(f"{len(done)} of {len(grid)} runs finished earlier: skipped")
    records = []
    try:
        for variant, seed in grid:
            if is_done(out, variant, seed):
                continue
            bar.set_postfix_str(f"{variant} seed{seed}")
            record = run_one(spec, out, variant, seed, store, train_fn, write)
            records.append(record)
            metrics = eval_rows(out, variant, seed)
            write(status_line(record, metrics))
            bar.update(1)
    finally:
        bar.close()
    write_ablation_report(out, variants, seeds)
    return records


def status_line(record: RunRecord, rows: list[MetricRow]) -> str:
    def at(metric: str, h: int) -> str:
        r = next((r for r in rows if r.metric == metric and r.horizon == h and r.scale == 1), None)
        return "-" if r is None else f"{r.value:.2f}"

    return (
        f"{record.variant} seed{record.seed}: {record.steps} steps in "
        f"{record.train_seconds / 60:.1f} min, eval {record.eval_seconds:.0f} s; PSNR h1 "
        f"{at('psnr', 1)} h4 {at('psnr', 4)} h16 {at('psnr', 16)}; Delta-PSNR h4 "
        f"{at('delta_psnr', 4)}"
    )


# -- the report ---------------------------------------------------------------------------------
def eval_rows(out: Path, variant: str, seed: int) -> list[MetricRow]:
    from farsight.eval.report import read_metrics

    rows = read_metrics(run_dir(out, variant, seed) / "eval" / "metrics.json")
    return [dataclasses.replace(r, variant=variant, seed=seed) for r in rows]


def grad_cosines(folder: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Per head pair with the main head: (steps, cosines) logged to the run's TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not (folder / "tb").exists():
        return {}
    events = EventAccumulator(str(folder / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    out = {}
    for tag in events.Tags().get("scalars", []):
        if tag.startswith("train/grad_cos/main~"):
            by_step = {e.step: e.value for e in events.Scalars(tag)}  # a resume may repeat
            steps = sorted(by_step)
            out[tag.removeprefix("train/grad_cos/")] = (steps, [by_step[s] for s in steps])
    return out


def cost_table(out: Path, variants: Sequence[str], seeds: Sequence[int]) -> str:
    from farsight.eval.report import markdown_table

    body = []
    for v in variants:
        flops_path = out / v / FLOPS_FILE
        flops = read_json(flops_path, "flops record") if flops_path.exists() else {}
        recs = [
            read_json(run_dir(out, v, s) / RUN_FILE, "run record")
            for s in seeds
            if (run_dir(out, v, s) / RUN_FILE).exists()
        ]
        train_min = [r["train_seconds"] / 60 for r in recs]
        eval_min = [r["eval_seconds"] / 60 for r in recs]
        steps = sorted({r["steps"] for r in recs})
        gflop = flops.get("flops_per_step", float("nan")) / 1e9
        body.append(
            [
                v,
                f"{gflop:.2f}",
                f"{flops.get('params', float('nan')) / 1e6:.2f}",
                ", ".join(map(str, steps)) or "-",
                f"{gflop * steps[0] / 1e3:.1f}" if len(steps) == 1 else "-",
                _mean_range(train_min),
                _mean_range(eval_min),
            ]
        )
    return markdown_table(
        [
            "variant",
            "GFLOP / step",
            "params (M)",
            "steps",
            "train TFLOP",
            "train min (mean [min, max])",
            "eval min",
        ],
        body,
    )


def _mean_range(x: list[float]) -> str:
    if not x:
        return "-"
    return f"{np.mean(x):.2f} [{min(x):.2f}, {max(x):.2f}]"


def write_strips(out: Path, variants: Sequence[str], seed: int) -> list[Path]:
    """One strip per kept clip: the truth and each variant's rollout (seed ``seed``)."""
    from farsight.eval.report import write_strip
    from farsight.eval.run import strip_horizons

    loaded = {}
    for v in variants:
        path = run_dir(out, v, seed) / "eval" / ROLLOUT_FILE
        if path.exists():
            with np.load(path) as z:
                loaded[v] = {k: z[k] for k in ("gt", "gen")}
    if not loaded:
        return []
    first = next(iter(loaded.values()))
    if any(not np.array_equal(d["gt"], first["gt"]) for d in loaded.values()):
        return []  # evaluated on different clips: a side-by-side would mislead
    paths = []
    for c in range(len(first["gt"])):
        hs = strip_horizons(first["gt"].shape[1])
        paths.append(
            write_strip(
                out / f"strip_clip{c}.png",
                first["gt"][c],
                {v: d["gen"][c] for v, d in loaded.items()},
                hs,
                title=f"eval clip {c}, seed {seed}, true actions",
            )
        )
    return paths


def write_ablation_report(out: str | Path, variants: Sequence[str], seeds: Sequence[int]) -> Path:
    """OUT/README.md and its PNGs from the finished runs of the grid (unfinished are listed)."""
    from farsight.eval.report import (
        markdown_table,
        paired_differences,
        plot_series,
        summary_table,
        write_report,
    )

    out = Path(out)
    spec = read_json(out / SPEC_FILE, "ablation spec")
    finished = [(v, s) for v in variants for s in seeds if is_done(out, v, s)]
    missing = [f"{v}/seed{s}" for v in variants for s in seeds if not is_done(out, v, s)]
    if not finished:
        raise UsageError(f"no finished run in {out} to report on")
    first_run = {}
    for v, s in finished:
        first_run.setdefault(v, run_dir(out, v, s))
    # Each variant's first finished run, read once: its eval metadata and its trained config.
    metas = {
        v: read_json(f / "eval" / "metrics.json", "eval metrics").get("meta", {})
        for v, f in first_run.items()
    }
    configs = {v: trained_config(f) for v, f in first_run.items()}
    sampling = {v: sampling_text(m) for v, m in metas.items()}
    # Latent errors of runs on different autoencoders live in different spaces (continuous
    # latents vs FSQ code values): not comparable, so left out when a grid mixes them.
    mixed_latents = len({c.data.autoencoder for c in configs.values()}) > 1
    dropped = (*REPORT_METRICS_DROPPED, *(("latent_mse",) if mixed_latents else ()))
    rows = [r for v, s in finished for r in eval_rows(out, v, s) if r.metric not in dropped]
    meta = metas[finished[0][0]]

    grad_images = []
    for v in variants:
        series: dict[str, list[tuple[list[int], list[float]]]] = {}
        for s in seeds:
            if is_done(out, v, s):
                for pair, curve in grad_cosines(run_dir(out, v, s)).items():
                    series.setdefault(pair, []).append(curve)
        if series:
            grad_images.append(
                plot_series(
                    out / f"grad_cos_{v}.png",
                    dict(sorted(series.items())),
                    title=f"{v}: cosine of per-head gradients on the shared trunk",
                    ylabel="cosine with the main head's gradient",
                )
            )

    seed_for_strips = next((s for s in seeds if any(is_done(out, v, s) for v in variants)), 0)
    strips = write_strips(out, variants, seed_for_strips)
    cfg0 = configs[finished[0][0]]
    token_ae = spec.get("token_autoencoder", "")
    tokens = f"; MaskGIT variants: FSQ tokens of `{token_ae}`" if token_ae else ""
    ceilings = ", ".join(
        f"`{Path(ae).name}` {psnr:.2f} dB"
        for ae in (spec["autoencoder"], token_ae)
        if ae and (psnr := _test_psnr(ae)) is not None
    )
    shared_sampling = (
        next(iter(sampling.values())) if len(set(sampling.values())) == 1 else "per variant"
    )
    no_latents = (
        ", no latent MSE (the variants' latents are not comparable)" if mixed_latents else ""
    )
    setup = markdown_table(
        ["setting", "value"],
        [
            ["recipe", f"`{spec['recipe']}`, overrides `{' '.join(spec['overrides']) or '-'}`"],
            ["data", f"`{spec['data']}` (autoencoder `{spec['autoencoder']}`){tokens}"],
            [
                "model",
                f"depth {cfg0.model.depth}, width {cfg0.model.width}, patch {cfg0.model.patch}, "
                f"window {cfg0.model.window}, latents {cfg0.model.latent_size} x "
                f"{cfg0.model.latent_channels}",
            ],
            [
                "training",
                f"{cfg0.train.steps} steps x batch {cfg0.train.batch_size} x clip "
                f"{cfg0.data.clip_len}, lr {cfg0.train.optim.lr}, seeds {list(seeds)}",
            ],
            [
                "evaluation",
                f"split {meta.get('split')}, {len(meta.get('clips', []))} clips, prompt "
                f"{meta.get('prompt_frames')} frames, horizon {meta.get('horizon')}, eval seed "
                f"{meta.get('seed')}, sampling {shared_sampling}{no_latents}",
            ],
            ["equal compute", "equal optimizer steps (FLOPs per step differ: see below)"],
            [
                "autoencoder ceiling",
                f"test PSNR of reconstructions (the autoencoder run's eval.json): {ceilings}"
                if ceilings
                else "-",
            ],
        ],
    )
    variant_table = markdown_table(
        ["variant", "what it changes", "rollout sampling"],
        [[v, describe(v), sampling.get(v, "-")] for v in variants],
    )
    sections = [
        ("Setup", setup),
        ("Variants", variant_table),
        (
            "Training cost",
            "Equal compute = equal optimizer steps. GFLOP / step: torch's FlopCounterMode over one "
            "forward + backward of the variant's objective (batch and clip as trained; AdamW and "
            "the gradient-cosine diagnostic excluded), measured once per variant. Minutes are "
            "wall time on a shared machine (validation, checkpoints and the diagnostic included), "
            "so they are noisy; FLOPs are not.\n\n" + cost_table(out, variants, seeds),
        ),
    ]
    if missing:
        sections.append(("Unfinished runs", ", ".join(missing)))
    baseline = "next_frame" if "next_frame" in variants else variants[0]
    diffs = paired_differences(rows, baseline)
    sections.insert(
        0,
        (
            f"Differences from {baseline} (paired by seed)",
            "Mean over seeds of (variant - baseline), same seeds and same eval clips; an interval "
            "that excludes 0 is a difference at the 95% level (mind each metric's direction).\n\n"
            + summary_table(diffs),
        ),
    )
    # The trivial predictor on the same clips: the floor every model must clear.
    from farsight.data.store import EpisodeStore
    from farsight.eval.run import reference_rows

    reference = [
        r
        for r in reference_rows(EpisodeStore(spec["data"], verify="size"), meta, n_boot=200)
        if r.metric not in REPORT_METRICS_DROPPED
    ]
    write_report(
        out,
        rows + reference,
        title=f"Ablation: {spec['recipe']} on {Path(spec['data']).name}",
        strips=strips,
        extra_images=grad_images,
        sections=sections,
        meta={"spec": spec, "runs": [f"{v}/seed{s}" for v, s in finished]},
    )
    return out / "README.md"


def _test_psnr(autoencoder: str) -> float | None:
    """Test-split reconstruction PSNR from an autoencoder run's eval.json, if it has one:
    no rollout decoded by that autoencoder can beat it."""
    from farsight.train.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(autoencoder).parent / "eval.json"
    if not path.exists():
        return None
    return read_json(path, "autoencoder evaluation").get("test", {}).get("psnr")
