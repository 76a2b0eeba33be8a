"""Every trainer starts, refuses and resumes the same way (``farsight.train.trainer``).

The checks run on checkpoints written directly, without training: a refusal or a finished
run returns before any data is read (the configs here name none, so a trainer that went on
would fail asking for it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from farsight.config import ConfigError
from farsight.errors import UsageError
from farsight.train.autoencoder import train_autoencoder
from farsight.train.checkpoint import CHECKPOINT_NAME, CheckpointError, save_checkpoint
from farsight.train.dynamics import train_dynamics
from farsight.train.lam import train_lam
from farsight.train.recipes.autoencoder import AE_RECIPES
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES
from farsight.train.recipes.lam import LAM_RECIPES

# kind -> (its tiny recipe, its run function)
TRAINERS = {
    "autoencoder": (lambda: AE_RECIPES.get("ae_tiny"), train_autoencoder),
    "lam": (lambda: LAM_RECIPES.get("lam_tiny"), train_lam),
    "dynamics": (lambda: DYNAMICS_RECIPES.get("dyn_tiny"), train_dynamics),
}
KINDS = list(TRAINERS)


def write_checkpoint(out: Path, kind: str, cfg, step: int, train_seconds: float = 0.0) -> None:
    """A checkpoint of a ``kind`` run at ``step``: the parts a resume reads before training."""
    save_checkpoint(
        out / CHECKPOINT_NAME,
        kind=kind,
        config=cfg,
        step=step,
        model={},
        data={"train_seconds": train_seconds},
        extra={"metrics": {"loss": 0.5}},
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_run_refuses_a_folder_holding_a_checkpoint(kind, tmp_path):
    recipe, run = TRAINERS[kind]
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"a run")
    with pytest.raises(UsageError, match="already holds a checkpoint; continue it with --resume"):
        run(recipe(), tmp_path, progress=False)
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_resume_needs_a_checkpoint_of_its_kind(kind, tmp_path):
    recipe, run = TRAINERS[kind]
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        run(recipe(), tmp_path, resume=True, progress=False)
    other = "lam" if kind != "lam" else "autoencoder"
    write_checkpoint(tmp_path, other, TRAINERS[other][0](), step=1)
    with pytest.raises(CheckpointError, match=f"this needs a '{kind}' one"):
        run(recipe(), tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("kind", KINDS)
def test_resuming_a_run_with_all_steps_done_returns_at_once(kind, tmp_path, capsys):
    recipe, run = TRAINERS[kind]
    cfg = recipe()
    write_checkpoint(tmp_path, kind, cfg, step=cfg.train.steps)
    # The stored config counts, not the one given (here a default with thousands of steps).
    result = run(type(cfg)(), tmp_path, resume=True)
    assert result.step == cfg.train.steps and result.metrics == {"loss": 0.5}
    assert f"is complete (all steps done): step {cfg.train.steps}" in capsys.readouterr().out


@pytest.mark.parametrize("kind", KINDS)
def test_resuming_a_run_whose_time_budget_is_spent_returns_at_once(kind, tmp_path, capsys):
    recipe, run = TRAINERS[kind]
    cfg = recipe()
    cfg.train.max_minutes = 1.0
    write_checkpoint(tmp_path, kind, cfg, step=1, train_seconds=60.0)
    result = run(type(cfg)(), tmp_path, resume=True)
    assert result.step == 1
    assert "is complete (its time budget is spent): step 1" in capsys.readouterr().out
    # With budget left the run goes on: to its data, which this config does not name.
    write_checkpoint(tmp_path, kind, cfg, step=1, train_seconds=59.0)
    with pytest.raises(UsageError, match="--data"):
        run(type(cfg)(), tmp_path, resume=True, progress=False)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("kind", KINDS)
def test_a_run_stops_when_its_time_budget_is_spent(kind, arena_world, tmp_path):
    """Trained for real: the budget stops each trainer after one step with a checkpoint, the
    run is evaluated, and resuming it does nothing."""
    recipe, run = TRAINERS[kind]
    cfg = recipe()
    cfg.data.path = str(arena_world / "store")
    if kind == "dynamics":
        cfg.data.autoencoder = str(arena_world / "ae")
    cfg.train.steps, cfg.train.max_minutes = 100, 1e-9
    result = run(cfg, tmp_path / "run", progress=False)
    assert (result.step, result.stopped) == (1, "time")
    assert (tmp_path / "run" / "config.json").exists()
    if kind != "dynamics":
        assert (tmp_path / "run" / "eval.json").exists()
    again = run(type(cfg)(), tmp_path / "run", resume=True, progress=False)
    assert again.step == 1 and again.losses == []


@pytest.mark.parametrize("name", DYNAMICS_RECIPES.names())
def test_every_dynamics_recipe_is_a_valid_run(name):
    """Checked as training checks it, so a recipe that a change to another one broke (e.g.
    by inheriting an option its objective cannot use) fails here, not minutes into a run."""
    cfg = DYNAMICS_RECIPES.get(name)
    if cfg.objective.kind == "maskgit":
        cfg.objective.fsq_levels = (8, 5, 5, 5)  # training reads them from the autoencoder
    cfg.validate()


@pytest.mark.parametrize(
    "overrides,match",
    [
        (
            {"objective.kind": "maskgit", "objective.tau_min": 0.0, "objective.fsq_levels": (5,)},
            "rollout_context",
        ),
        ({"objective.prediction": "v"}, "residual_output"),
        ({"objective.action_dropout": 0.1}, "null_action"),
    ],
)
def test_a_run_config_checks_what_its_parts_ask_of_each_other(overrides, match):
    cfg = DYNAMICS_RECIPES.get("dyn_quickstart")
    for key, value in overrides.items():
        part, field_name = key.split(".")
        setattr(getattr(cfg, part), field_name, value)
    with pytest.raises(ConfigError, match=match):
        cfg.validate()
