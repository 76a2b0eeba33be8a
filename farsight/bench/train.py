"""Dynamics training step: tokens/s, achieved FLOP/s against the matmul peak, cost of heads.

The FLOPs of a step (forward + backward) are counted by torch's FlopCounterMode; the peak is
a large square matmul timed in the same run, with the same threads and dtype. The step is that
of a training recipe (``--recipe``: its model and objective; ``--size`` swaps in a size
preset), timed for the multi-frame heads (1, 2, 4, 8) with the resolution cascade and for
next-frame only, on the same batch.
"""

from __future__ import annotations

import argparse
import statistics
import time

from farsight.bench import Row
from farsight.dynamics_config import DYNAMICS_SIZES, HEADS_PRESETS
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="dyn_quickstart", help="dynamics training recipe")
    p.add_argument("--size", default="", help="a dynamics size preset instead of the recipe's")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--clip-len", type=int, default=0, help="frames per clip (0: the recipe's)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per variant")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))


def matmul_peak(device, dtype, n: int = 2048, repeats: int = 5) -> float:
    # lazy: torch, when the benchmark runs; `farsight bench train --help` imports this module.
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def attention_times(cfg, args, device, dtype, temporal: bool, repeats: int = 10):
    """Seconds for one attention forward and backward at the recipe's shape, spatial (B * T
    frames of N tokens) or temporal (B * N tokens over the T frames of a clip, causal within
    the window), with torch's kernel in ``dtype`` and through ``farsight.models.layers.attend``
    (the plain math on a CPU)."""
    # lazy: torch, when the benchmark runs; `farsight bench train --help` imports this module.
    import torch
    import torch.nn.functional as F

    from farsight.models.layers import attend, temporal_mask

    gh, gw = cfg.token_grid
    frames, tokens = args.batch_size * args.clip_len, gh * gw
    seqs, length = (args.batch_size * tokens, args.clip_len) if temporal else (frames, tokens)
    shape = (seqs, cfg.num_heads, length, cfg.width // cfg.num_heads)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in "qkv")
    t = torch.arange(length, device=device)
    mask = temporal_mask(t, t, cfg.window) if temporal else None

    def median(fn) -> float:
        times = []
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            fn(q, k, v, mask).sum().backward()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return median(F.scaled_dot_product_attention), median(attend), f"{seqs} x {length}"


def time_steps(cfg, recipe, args, device, precision) -> tuple[list[float], int, int]:
    """Seconds per training step, FLOPs per step, tokens per step. A recipe that trains on
    its own rollouts (``rollout_context``) generates those contexts inside the timed step, as
    its training does."""
    # lazy: torch, when the benchmark runs; `farsight bench train --help` imports this module.
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from farsight.models.dynamics import DynamicsModel
    from farsight.objectives import make_objective
    from farsight.precision import autocast
    from farsight.train.dynamics_objective import own_context
    from farsight.train.schedule import make_optimizer

    torch.manual_seed(0)
    model = DynamicsModel(cfg).to(device)
    objective = make_objective(recipe.objective)
    optimizer = make_optimizer(model, recipe.train.optim)  # the training's AdamW
    frames = args.clip_len + cfg.heads.max_offset - 1
    h, w = cfg.latent_size
    batch = {
        "latents": torch.randn(args.batch_size, frames, cfg.latent_channels, h, w, device=device),
        "actions": torch.randint(0, cfg.num_actions, (args.batch_size, frames), device=device),
    }

    def step() -> None:
        with autocast(device, precision):
            with_own = recipe.rollout_context.fraction
            shown = own_context(model, batch, recipe, args.clip_len) if with_own else batch
            loss, _ = objective(model, shown)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    times = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    gh, gw = cfg.token_grid
    return times, counter.get_total_flops(), args.batch_size * args.clip_len * gh * gw


def run(args: argparse.Namespace) -> list:
    # lazy: torch, when the benchmark runs; `farsight bench train --help` imports this module.
    import torch

    from farsight.precision import resolve_device, resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    args.clip_len = args.clip_len or DYNAMICS_RECIPES.get(args.recipe).data.clip_len
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak = matmul_peak(device, dtype)
    rows = [Row(f"matmul peak ({precision})", peak / 1e9, "GFLOP/s", "2048^3, same run")]
    medians = {}
    for heads in ("heads_skip", "heads_next_frame"):
        recipe = DYNAMICS_RECIPES.get(args.recipe)
        recipe.data.clip_len = args.clip_len  # generated contexts span the timed clip
        cfg = DYNAMICS_SIZES.get(args.size) if args.size else recipe.model
        cfg.num_actions = 9
        cfg.heads = HEADS_PRESETS.get(heads)
        times, flops, tokens = time_steps(cfg, recipe, args, device, precision)
        medians[heads] = med = statistics.median(times)
        model = args.size or f"{args.recipe} ({recipe.objective.kind})"
        if recipe.rollout_context.fraction:
            model += f", rollout context {recipe.rollout_context.fraction:g}"
        what = f"{model}, batch {args.batch_size} x {args.clip_len} frames, {precision}"
        rows += [
            Row(f"{heads}: step time", med, "s", what),
            Row(f"{heads}: tokens/s", tokens / med, "tokens/s", "input tokens, fwd+bwd+AdamW"),
            Row(f"{heads}: achieved", flops / med / 1e9, "GFLOP/s", "FlopCounterMode FLOPs"),
            Row(f"{heads}: of matmul peak", 100 * flops / med / peak, "%", "goal >= 40"),
        ]
    for axis in ("spatial", "temporal"):
        kernel, used, shape = attention_times(cfg, args, device, dtype, axis == "temporal")
        rows += [
            Row(
                f"{axis} attention, torch kernel in {precision}",
                kernel * 1e3,
                "ms",
                f"fwd+bwd, {shape} (sequences x length)",
            ),
            Row(
                f"{axis} attention, as the model runs it",
                used * 1e3,
                "ms",
                "fwd+bwd; attend(): the plain math on a CPU",
            ),
        ]
    rows.append(
        Row(
            "heads (1,2,4,8)+cascade / next-frame only",
            medians["heads_skip"] / medians["heads_next_frame"],
            "x",
            "step time ratio; goal <= 1.25",
        )
    )
    return rows
