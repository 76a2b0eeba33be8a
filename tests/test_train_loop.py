"""The generic training loop: schedule, checkpoints, exact resume, run-folder errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from farsight.cli import main
from farsight.config import build_config
from farsight.data.store import EpisodeStore, StoreWriter
from farsight.precision import autocast, resolve_precision
from farsight.train.autoencoder import frame_dataset, load_autoencoder, train_autoencoder
from farsight.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from farsight.train.data import ResumableSampler, step_batches
from farsight.train.ema import EMA
from farsight.train.recipes.autoencoder import AE_RECIPES, AutoencoderRunConfig
from farsight.train.schedule import lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")


def make_store(path: Path, episodes: int = 8, size: int = 16, seed: int = 0) -> Path:
    """Moving squares on a gradient: small, structured, with val and test episodes."""
    rng = np.random.default_rng(seed)
    writer = StoreWriter(
        path,
        {"split": {"seed": 0, "val": 0.2, "test": 0.2}},
        {
            "frames": ((size, size, 3), "uint8"),
            "actions": ((), "int64"),
            "rewards": ((), "float32"),
            "dones": ((), "bool"),
            "state.pos": ((2,), "float32"),
        },
        shard_frames=40,
    )
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    for e in range(episodes):
        n = 12 + e
        pos = rng.integers(0, size - 4, (n, 2))
        frames = np.zeros((n, size, size, 3), np.float32)
        frames[..., 0] = ramp[None, None, :]
        frames[..., 2] = ramp[None, :, None]
        for t, (y, x) in enumerate(pos):
            frames[t, y : y + 4, x : x + 4] = (255, 255, 0)
        dones = np.zeros(n, bool)
        dones[-1] = e % 2 == 0
        writer.add_episode(
            {
                "frames": frames.astype(np.uint8),
                "actions": rng.integers(0, 3, n),
                "rewards": rng.random(n, dtype=np.float32),
                "dones": dones,
                "state.pos": pos.astype(np.float32),
            },
            terminated=e % 2 == 0,
        )
    writer.close()
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("data") / "store")


def tiny_config(store: Path, **train) -> AutoencoderRunConfig:
    overrides = [f"data.path={store}"] + [f"train.{k}={v}" for k, v in train.items()]
    return build_config(AE_RECIPES, "ae_tiny", overrides)


def test_lr_schedule():
    factors = [lr_factor(s, warmup=10, total=100, min_ratio=0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)
    # A spent time budget ends the cosine early; warmup still goes by steps.
    assert lr_factor(50, 10, 100, 0.1, time_fraction=1.0) == pytest.approx(0.1)
    assert lr_factor(50, 10, 100, 0.1, time_fraction=0.2) == factors[50]
    assert lr_factor(5, 10, 100, 0.1, time_fraction=1.0) == factors[5]


def test_resumable_sampler_continues_the_stream():
    straight = ResumableSampler(10, rank=1, world=2, seed=3)
    it = iter(straight)
    stream = [next(it) for _ in range(23)]
    for start in (0, 4, 5, 11):
        resumed = iter(ResumableSampler(10, rank=1, world=2, seed=3, start=start))
        assert [next(resumed) for _ in range(23 - start)] == stream[start:]


def test_step_batches_resume_without_reloading(store):
    dataset = frame_dataset(EpisodeStore(store), "train")
    straight = step_batches(dataset, 4, 0, seed=1, rank=0, world=1)
    batches = [next(straight)["frames"] for _ in range(6)]
    resumed = step_batches(dataset, 4, 3, seed=1, rank=0, world=1)
    for want in batches[3:]:
        assert torch.equal(next(resumed)["frames"], want)


def test_ema_tracks_and_copies_buffers():
    model = torch.nn.BatchNorm1d(3)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.running_mean.fill_(5.0)
    ema.update(model)  # first update: decay min(0.9, 1/10) = 0.1
    assert torch.allclose(ema.model.weight, torch.full((3,), 0.1 * 1.0 + 0.9 * 2.0))
    assert torch.equal(ema.model.running_mean, model.running_mean)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_precision_never_fp16():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in ("bf16", "fp32")
    with autocast(cpu, "bf16"):
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("fast_bf16,want", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu(monkeypatch, fast_bf16, want):
    """AVX512-BF16/AMX CPUs get bf16 from ``auto``, AVX2-only ones fp32 (simulated here, so
    both paths are tested on either kind of machine); bf16 asked on the latter warns."""
    from farsight import precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast_bf16)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == want
    if fast_bf16:
        resolve_precision("bf16", cpu)  # no warning
    else:
        with pytest.warns(UserWarning, match="many times slower"):
            resolve_precision("bf16", cpu)


def test_checkpoint_round_trip(tmp_path, store):
    cfg = tiny_config(store)
    train_autoencoder(cfg, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run", kind="autoencoder")
    assert ckpt["step"] == cfg.train.steps
    assert {"model", "ema", "optimizer", "scheduler", "rng", "data", "config"} <= set(ckpt)
    model, loaded_cfg, _ = load_autoencoder(tmp_path / "run")
    assert loaded_cfg == cfg
    for name, value in ckpt["ema"]["model"].items():
        assert torch.equal(model.state_dict()[name], value)
    # The latent scale was estimated from data and is part of the weights.
    assert model.latent_scale.item() != 1.0
    # The run folder holds what it promises.
    run = tmp_path / "run"
    assert (run / "config.json").is_file() and list((run / "samples").glob("recon_step*.png"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8] and "psnr_r4" in rows[0]
    evaluation = json.loads((run / "eval.json").read_text())
    assert {"val", "test"} <= set(evaluation) and "ssim" in evaluation["test"]
    assert list((run / "tb").iterdir())


def test_checkpoint_errors(tmp_path, store):
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    other = tmp_path / "other.pt"
    save_checkpoint(
        other, kind="dynamics", config=tiny_config(store), step=1, model=torch.nn.Linear(2, 2)
    )
    with pytest.raises(CheckpointError, match="'dynamics' checkpoint; this needs a 'autoencoder'"):
        load_autoencoder(other)


def test_resume_repeats_the_uninterrupted_losses(tmp_path, store, monkeypatch):
    """N steps straight == a run that crashes right after its step-N/2 checkpoint, resumed
    from it with --resume (CPU, deterministic): identical losses and weights."""
    cfg = tiny_config(store, steps=8, ckpt_every=4, val_every=4, deterministic="true")
    cfg.objective.latent_noise = 0.1  # the objective draws random numbers every step
    cfg.objective.latent_l2 = 1e-3
    straight = train_autoencoder(cfg, tmp_path / "straight", progress=False)

    from farsight.train import loop

    saved = []
    original = loop.save_checkpoint

    def crash_after_first_save(*args, **kwargs):
        original(*args, **kwargs)
        saved.append(kwargs["step"])
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", crash_after_first_save)
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    assert saved == [4]
    resumed = train_autoencoder(
        AutoencoderRunConfig(), tmp_path / "resumed", resume=True, progress=False
    )
    assert resumed.step == 8
    assert resumed.losses == straight.losses[4:]
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    for name, value in a["ema"]["model"].items():
        assert torch.equal(b["ema"]["model"][name], value), name
    for name, value in a["model"].items():
        assert torch.equal(b["model"][name], value), name
    # The metrics log keeps one row per validation, none duplicated by the restart.
    rows = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [4, 8]


def test_tensorboard_keeps_every_step_across_a_resume(tmp_path, store, monkeypatch):
    """A run killed after its step-4 checkpoint, having logged steps 5 and 6, then resumed:
    TensorBoard holds train/loss at every step 1..8 once (the checkpoint's step included),
    with the resumed run's values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from farsight.train import loop

    cfg = tiny_config(store, steps=8, ckpt_every=4, val_every=0, log_every=1)
    original = loop.step_seed

    def killed_at_step_7(seed, rank, step):  # step counts from 0
        if step == 6:
            raise KeyboardInterrupt
        return original(seed, rank, step)

    monkeypatch.setattr(loop, "step_seed", killed_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(cfg, tmp_path / "run", progress=False)
    monkeypatch.undo()
    resumed = train_autoencoder(
        AutoencoderRunConfig(), tmp_path / "run", resume=True, progress=False
    )
    events = EventAccumulator(str(tmp_path / "run" / "tb")).Reload().Scalars("train/loss")
    assert [e.step for e in events] == list(range(1, 9))
    assert [e.value for e in events[4:]] == pytest.approx(resumed.losses)


def test_time_budget_stops_with_a_checkpoint_and_anneals(tmp_path, store):
    cfg = tiny_config(store, steps=100, max_minutes=1e-9)
    cfg.train.optim.warmup_steps = 0
    result = train_autoencoder(cfg, tmp_path / "run", progress=False)
    assert result.step == 1 and result.stopped == "time"
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["step"] == 1 and ckpt["data"]["train_seconds"] > 0
    # The budget was spent at once, so the LR went straight to the end of the cosine.
    lr = ckpt["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(cfg.train.optim.lr * cfg.train.optim.min_lr_ratio)
    # Resuming a run whose budget is spent does nothing.
    again = train_autoencoder(AutoencoderRunConfig(), tmp_path / "run", resume=True, progress=False)
    assert again.step == 1 and load_checkpoint(tmp_path / "run")["step"] == 1


def bar_states(text: str, desc: str) -> list[tuple[int, int, float, float]]:
    """(n, total, elapsed s, remaining s) of every rendering of a tqdm bar in ``text``."""
    import re

    def seconds(clock: str) -> float:
        parts = [float(p) for p in clock.split(":")]
        return sum(p * 60**i for i, p in enumerate(reversed(parts)))

    states = []
    for line in re.split(r"[\r\n]+", text):
        m = re.search(r"(\d+)/(\d+) \[([\d:]+)<([\d:?]+)", line)
        if desc in line and m and m.group(4) != "?":
            n, total, elapsed, left = m.groups()
            states.append((int(n), int(total), seconds(elapsed), seconds(left)))
    return states


@pytest.mark.slow
def test_progress_bar_counts_to_the_limit_that_stops_the_run(tmp_path, store, capsys):
    """A time-budgeted run far from train.steps: the bar's total is the step the budget will
    stop it at and its ETA the budget left, never the time train.steps would take; it ends
    full. A run that reaches train.steps first keeps train.steps as its total."""
    budget = 3.0
    cfg = tiny_config(store, steps=100_000, max_minutes=budget / 60, val_every=0, ckpt_every=0)
    result = train_autoencoder(cfg, tmp_path / "timed", progress=True)
    assert result.stopped == "time" and result.step < 100_000
    err = capsys.readouterr().err
    states = bar_states(err, "train autoencoder")
    assert len(states) >= 2, states
    assert all(elapsed + left <= budget + 2 for _, _, elapsed, left in states), states
    assert all(total < 100_000 for _, total, _, _ in states[1:]), states
    assert states[-1][:2] == (result.step, result.step)
    assert "train autoencoder (0.05 min budget)" in err

    cfg = tiny_config(store, steps=6, max_minutes=60, val_every=0, ckpt_every=0)
    train_autoencoder(cfg, tmp_path / "steps", progress=True)
    states = bar_states(capsys.readouterr().err, "train autoencoder")
    assert states[-1][:2] == (6, 6)


def test_cli_run_folder_errors(tmp_path, store, capsys):
    out = tmp_path / "run"
    assert main(["train", "autoencoder", "--out", str(out), "--resume"]) == 2
    assert "holds no checkpoint.pt" in capsys.readouterr().err
    args = ["train", "autoencoder", "ae_tiny", "--data", str(store), "--out", str(out), "--quiet"]
    assert main([*args, "train.steps=2", "train.val_every=0"]) == 0
    assert main([*args, "train.steps=2"]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(["train", "autoencoder", "--out", str(out), "--resume", "train.steps=3"]) == 2
    assert "drop the recipe and overrides" in capsys.readouterr().err
    assert main([*args[:-3], "--out", str(tmp_path / "r2"), "model.kind=vq"]) == 2
    assert "model.kind" in capsys.readouterr().err


def test_optimizer_state_moves_between_index_and_name_keys():
    """An unsharded run's optimizer state (parameters by index, groups as make_optimizer
    builds them) converts to names, as a resumed FSDP2 run reads it, and a name-keyed one (as
    FSDP2 runs save it) loads into an unsharded model."""
    from farsight.parallel import _index_to_name, load_optimizer_state
    from farsight.train.config import OptimConfig
    from farsight.train.schedule import make_optimizer, set_lr

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    opt = make_optimizer(model, OptimConfig())
    set_lr(opt, 0.5)
    model(torch.randn(5, 3)).square().sum().backward()
    opt.step()
    saved = opt.state_dict()

    fresh = make_optimizer(model, OptimConfig())
    by_name = _index_to_name(model, fresh, saved)
    assert set(by_name["state"]) == {n for n, _ in model.named_parameters()}
    load_optimizer_state(model, fresh, by_name)
    loaded = fresh.state_dict()
    for i, state in saved["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(loaded["state"][i][key], value)
    assert loaded["param_groups"][0]["initial_lr"] == saved["param_groups"][0]["initial_lr"]


AVX512_NO_BF16 = "fpu sse2 avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_vbmi2"


@pytest.mark.parametrize(
    "flags,fast",
    [
        ("fpu sse2 avx2 fma", False),  # AVX2 only (AMD EPYC, November)
        (AVX512_NO_BF16, False),  # oneDNN says "supported" here, and emulates it
        (AVX512_NO_BF16 + " avx512_bf16", True),  # AMD EPYC with AVX512-BF16
        (AVX512_NO_BF16 + " avx512_bf16 amx_bf16 amx_tile", True),  # Intel Xeon with AMX
    ],
)
def test_fast_bf16_means_native_bf16_instructions(monkeypatch, tmp_path, flags, fast):
    """The flags decide, not oneDNN: it reports bf16 on any AVX512 core, where it runs at a
    quarter of fp32's matmul speed."""
    from farsight import precision

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: a CPU\nflags\t\t: {flags}\n\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    assert precision.cpu_flags() == set(flags.split())
    assert precision.cpu_has_fast_bf16() is fast
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if fast else "fp32")


def test_without_cpu_flags_onednn_decides(monkeypatch, tmp_path):
    from farsight import precision

    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "missing")
    assert precision.cpu_flags() is None
    onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert precision.cpu_has_fast_bf16() is onednn
