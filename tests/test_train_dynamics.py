"""Dynamics training end to end: cache, run, checkpoint -> world model, resume, DDP."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from farsight.data.store import StoreWriter
from farsight.errors import UsageError
from farsight.train.checkpoint import CheckpointError, load_checkpoint
from farsight.train.dynamics import train_dynamics
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES, DynamicsRunConfig
from farsight.world_model import load_world_model

# Every test here trains runs or starts torchrun.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def tiny(world: Path, **overrides) -> DynamicsRunConfig:
    cfg = DYNAMICS_RECIPES.get("dyn_tiny")
    cfg.data.path, cfg.data.autoencoder = str(world / "store"), str(world / "ae")
    for key, value in overrides.items():
        obj = cfg
        *parents, name = key.split(".")
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, name, value)
    return cfg


def test_run_writes_a_playable_checkpoint(arena_world, tmp_path):
    result = train_dynamics(tiny(arena_world), tmp_path / "run", progress=False)
    assert result.step == 6 and all(np.isfinite(result.losses))
    wm = load_world_model(tmp_path / "run")
    assert wm.meta["action_meanings"][1] == "UP" and wm.context_frames == 4
    assert wm.dynamics.cfg.num_actions == 9 and wm.dynamics.cfg.latent_size == (16, 16)
    # The embedded autoencoder is the one the latents came from.
    frames = torch.zeros(1, 3, 64, 64)
    z = wm.autoencoder.encode_normalized(frames)
    assert z.shape[1:] == (wm.dynamics.cfg.latent_channels, 16, 16)
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert {"loss_main", "loss_head2", "loss_head4", "loss_head8"} <= set(rows[-1])
    assert (tmp_path / "run" / "samples" / "rollout_step0000006.mp4").stat().st_size > 0


def test_resume_repeats_the_uninterrupted_losses(arena_world, tmp_path, monkeypatch):
    straight = train_dynamics(
        tiny(arena_world, grad_cosine_every=2), tmp_path / "a", progress=False
    )
    from farsight.train import loop

    original = loop.save_checkpoint

    def crash_after_save(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", crash_after_save)
    with pytest.raises(KeyboardInterrupt):
        train_dynamics(tiny(arena_world, grad_cosine_every=2), tmp_path / "b", progress=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "b")["step"] == 3
    resumed = train_dynamics(DynamicsRunConfig(), tmp_path / "b", resume=True, progress=False)
    assert resumed.losses == straight.losses[3:]


def test_init_from_starts_a_new_run_from_trained_weights(arena_world, tmp_path):
    train_dynamics(tiny(arena_world), tmp_path / "source", progress=False)
    source = load_checkpoint(tmp_path / "source")["ema"]["model"]
    # At lr 0 the new run's steps leave its weights where they started (AdamW's decay is
    # lr-scaled too), so its checkpoint shows what it started from.
    still = {"train.optim.lr": 0.0, "train.steps": 2}
    tuned = tiny(arena_world, **still, **{"train.init_from": str(tmp_path / "source")})
    train_dynamics(tuned, tmp_path / "tuned", progress=False)
    fresh = train_dynamics(tiny(arena_world, **still), tmp_path / "fresh", progress=False)
    ckpt = load_checkpoint(tmp_path / "tuned")
    assert ckpt["step"] == 2 and fresh.step == 2
    assert ckpt["config"]["train"]["init_from"] == str(tmp_path / "source")
    for name, value in source.items():
        assert torch.equal(ckpt["model"][name], value), name
        assert torch.equal(ckpt["ema"]["model"][name], value), name
    untouched = load_checkpoint(tmp_path / "fresh")["model"]
    assert not all(torch.equal(untouched[k], v) for k, v in source.items())


def test_a_run_started_from_weights_resumes_without_them(arena_world, tmp_path, monkeypatch):
    """Resume reads the run's own checkpoint: the weights it started from may be gone."""
    train_dynamics(tiny(arena_world), tmp_path / "source", progress=False)

    def cfg() -> DynamicsRunConfig:
        return tiny(arena_world, **{"train.init_from": str(tmp_path / "source")})

    straight = train_dynamics(cfg(), tmp_path / "a", progress=False)
    from farsight.train import loop

    original = loop.save_checkpoint

    def crash_after_save(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", crash_after_save)
    with pytest.raises(KeyboardInterrupt):
        train_dynamics(cfg(), tmp_path / "b", progress=False)
    monkeypatch.undo()
    (tmp_path / "source" / "checkpoint.pt").unlink()
    resumed = train_dynamics(DynamicsRunConfig(), tmp_path / "b", resume=True, progress=False)
    assert resumed.losses == straight.losses[3:]


def test_init_from_refuses_another_kind_model_or_autoencoder(arena_world, tmp_path):
    train_dynamics(tiny(arena_world), tmp_path / "source", progress=False)
    src = str(tmp_path / "source")
    other_heads = tiny(arena_world, **{"train.init_from": src, "model.num_heads": 1})
    with pytest.raises(CheckpointError, match=r"its model differs .*model\.num_heads \d+ there, 1"):
        train_dynamics(other_heads, tmp_path / "heads", progress=False)
    assert not (tmp_path / "heads").exists()
    nested = tiny(arena_world, **{"train.init_from": src, "model.heads.resolutions": (1, 1, 1, 1)})
    with pytest.raises(
        CheckpointError, match=r"heads\.resolutions \(1, 2, 4, 8\) there, \(1, 1, 1, 1\) here"
    ):
        train_dynamics(nested, tmp_path / "nested", progress=False)
    missing = tiny(arena_world, **{"train.init_from": str(tmp_path / "nowhere")})
    with pytest.raises(CheckpointError, match=r"train\.init_from=.*nowhere: checkpoint not found"):
        train_dynamics(missing, tmp_path / "missing", progress=False)
    ae = tiny(arena_world, **{"train.init_from": str(arena_world / "ae")})
    with pytest.raises(CheckpointError, match="is a 'autoencoder' checkpoint"):
        train_dynamics(ae, tmp_path / "ae", progress=False)
    # The same model, trained on another autoencoder's latents.
    ckpt = load_checkpoint(src)
    state = ckpt["extra"]["autoencoder"]["state"]
    name = next(iter(state))
    state[name] = state[name] + 1
    torch.save(ckpt, tmp_path / "other_ae.pt")
    other = tiny(arena_world, **{"train.init_from": str(tmp_path / "other_ae.pt")})
    with pytest.raises(CheckpointError, match="latents of another autoencoder"):
        train_dynamics(other, tmp_path / "other", progress=False)


def test_gradient_cosine_diagnostic_leaves_training_unchanged(arena_world, tmp_path):
    plain = train_dynamics(tiny(arena_world), tmp_path / "plain", progress=False)
    diag = train_dynamics(tiny(arena_world, grad_cosine_every=2), tmp_path / "diag", progress=False)
    assert plain.losses == diag.losses
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "diag" / "tb"))
    events.Reload()
    cosines = [t for t in events.Tags()["scalars"] if t.startswith("train/grad_cos/")]
    assert "train/grad_cos/main~head8" in cosines
    values = [e.value for e in events.Scalars("train/grad_cos/main~head8")]
    assert values and all(-1.0 <= v <= 1.0 for v in values)

    from farsight.train.curves import read_scalars, write_curves

    scalars = read_scalars(tmp_path / "diag")
    assert scalars["train/grad_cos/main~head8"][1] == pytest.approx(values)
    png = write_curves(tmp_path / "diag", tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="no TensorBoard"):
        write_curves(tmp_path / "nowhere", tmp_path / "x.png")


def latent_store(path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"latents": ((4, 8, 8), "float32"), "actions": ((), "int64")}
    writer = StoreWriter(path, {"env": {"env_id": "synthetic"}}, arrays)
    for length in (20, 17, 25, 22):
        writer.add_episode(
            {
                "latents": rng.standard_normal((length, 4, 8, 8)).astype(np.float32),
                "actions": rng.integers(0, 5, length),
            },
            terminated=False,
        )
    writer.close()


@pytest.mark.parametrize(
    "strategy, split_at", [("ddp", 0), ("fsdp", 0), ("fsdp", 2)], ids=["ddp", "fsdp", "fsdp-resume"]
)
def test_two_processes_match_one_process(tmp_path, strategy, split_at):
    """DDP and FSDP2 on 2 ranks reach one process's parameters and EMA with the same global
    batch; an FSDP2 run stopped at step 2 and resumed from its (gathered) checkpoint too."""
    latent_store(tmp_path / "store")
    probe = str(Path(__file__).parent / "probes" / "ddp_dynamics.py")
    store = str(tmp_path / "store")
    subprocess.run(
        [sys.executable, probe, store, str(tmp_path / "one.pt"), "4"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    args = [strategy] + ([str(split_at)] if split_at else [])
    two_ranks = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            probe,
            store,
            str(tmp_path / "two.pt"),
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two_ranks.returncode == 0, two_ranks.stderr[-3000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    moved = 0
    for name, value in one["final"].items():
        torch.testing.assert_close(two["final"][name], value, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(two["ema"][name], one["ema"][name], rtol=1e-5, atol=1e-6)
        moved += int(not torch.equal(value, one["initial"][name]))
    assert moved > len(one["final"]) // 2  # training really changed the weights
