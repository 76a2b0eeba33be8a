"""Running an ablation grid: each cell trained (or resumed) and evaluated, one at a time."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from farsight.data.store import EpisodeStore
from farsight.errors import UsageError
from farsight.eval.ablation.flops import step_flops
from farsight.eval.ablation.report import eval_rows, write_ablation_report
from farsight.eval.ablation.spec import (
    FLOPS_FILE,
    RUN_FILE,
    AblateSpec,
    RunRecord,
    check_spec,
    check_token_autoencoder,
    is_done,
    run_config,
    run_dir,
    trained_config,
)
from farsight.eval.metrics import MetricRow
from farsight.eval.run import evaluate, write_eval
from farsight.eval.variants import get_variant
from farsight.io import atomic_write_json
from farsight.objectives import TOKEN_OBJECTIVES
from farsight.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from farsight.train.dynamics import train_dynamics
from farsight.world_model import load_world_model


def run_one(
    spec: AblateSpec,
    out: Path,
    variant: str,
    seed: int,
    store: EpisodeStore,
    train_fn: Callable[..., Any],
    progress_line: Callable[[str], None],
) -> RunRecord:
    """Train (or resume) and evaluate one cell; returns its record."""
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
    if any(cfg.objective.kind in TOKEN_OBJECTIVES for cfg in cfgs):
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
