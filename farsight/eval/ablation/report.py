"""The ablation report: OUT/README.md, its tables and plots, from the grid's finished runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from farsight.data.store import EpisodeStore
from farsight.errors import UsageError
from farsight.eval.ablation.spec import (
    FLOPS_FILE,
    RUN_FILE,
    SPEC_FILE,
    is_done,
    run_dir,
    trained_config,
)
from farsight.eval.ablation.tb_events import grad_cosines
from farsight.eval.metrics import MetricRow
from farsight.eval.report import (
    markdown_table,
    paired_differences,
    plot_series,
    read_metrics,
    summary_table,
    write_report,
    write_strip,
)
from farsight.eval.run import ROLLOUT_FILE, reference_rows, sampling_text, strip_horizons
from farsight.eval.variants import describe
from farsight.io import read_json
from farsight.train.checkpoint import resolve_checkpoint

REPORT_METRICS_DROPPED = ("mse",)
"""Left out of the report (still in each run's eval/metrics.csv): PSNR is a monotone function
of the same clip-averaged MSE, so its curves would say nothing new."""


def eval_rows(out: Path, variant: str, seed: int) -> list[MetricRow]:
    rows = read_metrics(run_dir(out, variant, seed) / "eval" / "metrics.json")
    return [dataclasses.replace(r, variant=variant, seed=seed) for r in rows]


def cost_table(out: Path, variants: Sequence[str], seeds: Sequence[int]) -> str:
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
    path = resolve_checkpoint(autoencoder).parent / "eval.json"
    if not path.exists():
        return None
    return read_json(path, "autoencoder evaluation").get("test", {}).get("psnr")
