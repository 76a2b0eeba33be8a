"""The command line: help that lists the registries, printed commands that run where pasted,
a base install without the optional extras, light start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib

from farsight.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def run_python(
    code: str, tmp_path: Path, blocked: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter of this environment, with modules ``blocked`` as if not
    installed (a meta-path finder installed by a sitecustomize raises ModuleNotFoundError)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            BLOCKED = {set(blocked)!r}

            class Blocker:
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in BLOCKED:
                        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                    return None

            sys.meta_path.insert(0, Blocker())
            """
        )
    )
    # ROOT: this checkout's farsight, also where the environment's install is another one's.
    path = os.pathsep.join([str(site), str(ROOT)])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# What a base install (pip install -e ., no extras) lacks that this environment has: the
# packages of the games, train and dev extras, and what only they pull in.
EXTRAS_ONLY = (
    *("skimage", "scipy", "matplotlib", "tensorboard"),
    *("ale_py", "crafter", "vizdoom", "pygame"),
    *("pytest", "selenium"),
)


@pytest.mark.slow
def test_base_install_runs_without_the_extras(tmp_path):
    """With every optional package hidden: all help, a recording and its inspection work; a
    command that needs an extra fails with one line naming it."""
    result = run_python(
        """
        from farsight.cli import COMMANDS, main

        for argv in [[], *[[c] for c in COMMANDS], ["train", "dynamics"], ["bench", "env"]]:
            try:
                main([*argv, "--help"])
            except SystemExit as e:
                assert e.code == 0, (argv, e.code)
        assert main(["record", "--out", "store", "--frames", "64", "env.size=16"]) == 0
        assert main(["data", "info", "store"]) == 0
        code = main(["train", "autoencoder", "ae_tiny", "--data", "store", "--out", "run"])
        print("train exit", code)
        from farsight.extras import MissingExtraError
        from farsight.metrics import ssim
        try:
            ssim([[[[0, 0, 0]] * 8] * 8], [[[[0, 0, 0]] * 8] * 8])
        except MissingExtraError as e:
            print("ssim:", e)
        """,
        tmp_path,
        blocked=EXTRAS_ONLY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out, err = result.stdout, result.stderr
    assert "train exit 2" in out
    train_error = [line for line in err.splitlines() if "farsight train: error" in line]
    assert len(train_error) == 1 and "pip install 'farsight[train]'" in train_error[0], err
    assert "tensorboard" in train_error[0] and "Traceback" not in err
    assert "ssim: SSIM needs scikit-image" in out and "'farsight[train]'" in out


def test_optional_modules_are_the_extras_of_pyproject():
    from farsight.extras import OPTIONAL

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for module, (dist, extra) in OPTIONAL.items():
        assert any(req.startswith(dist) for req in extras[extra]), (module, dist, extra)
    named = {dist for dist, _ in OPTIONAL.values()}
    for extra in ("games", "train"):
        for req in extras[extra]:
            assert req.split(">")[0].split("=")[0] in named, req


def fresh_shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """``command`` as a user pastes it into a new terminal: no virtual environment active."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("where", ["repository", "elsewhere"])
def test_printed_commands_run_in_a_fresh_shell(tmp_path, monkeypatch, capsys, where):
    """The commands farsight prints for the user to paste (record's next step, the
    quickstart's play and tensorboard lines) run from the folder they were printed in."""
    cwd = ROOT if where == "repository" else tmp_path
    monkeypatch.chdir(cwd)
    store = tmp_path / "store"
    assert main(["record", "--out", str(store), "--frames", "64", "env.size=16"]) == 0
    printed = capsys.readouterr().out
    inspect = printed.split("inspect it with: ")[1].strip()
    result = fresh_shell(inspect, cwd)
    assert result.returncode == 0, (inspect, result.stderr)
    assert "sizes and CRC32 of every file" in result.stdout

    from farsight.commands.quickstart import next_steps

    lines = next_steps(tmp_path, tmp_path / "rollout.mp4", tmp_path / "dynamics", tmp_path / "c")
    play = lines[1].split("play the model:")[1].strip()
    tensorboard = lines[2].split("all of them: ")[1].rstrip(")")
    assert play.endswith(f"play --ckpt {tmp_path / 'dynamics'}")
    for command in (play, tensorboard):
        result = fresh_shell(f"{command} --help", cwd)
        assert result.returncode == 0, (command, result.stderr)


def help_text(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # no line breaks inside names
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def registries():
    """(command, names its help must list), each list read from its registry."""
    from farsight.commands.bench import BENCHES
    from farsight.commands.train import TRAINERS
    from farsight.data.recorder import RECORD_RECIPES
    from farsight.envs import ENV_IDS
    from farsight.eval.variants import DEFAULT_GRID, VARIANTS
    from farsight.train.recipes.autoencoder import AE_RECIPES
    from farsight.train.recipes.dynamics import DYNAMICS_RECIPES
    from farsight.train.recipes.lam import LAM_RECIPES

    return [
        ([], [c.rsplit(".")[-1] for c in COMMANDS]),
        (["train"], list(TRAINERS)),
        (["train", "autoencoder"], AE_RECIPES.names()),
        (["train", "dynamics"], DYNAMICS_RECIPES.names()),
        (["train", "lam"], LAM_RECIPES.names()),
        (["record"], [*RECORD_RECIPES.names(), *ENV_IDS]),
        (["play"], ENV_IDS),
        (["ablate"], [*VARIANTS, ",".join(DEFAULT_GRID), *DYNAMICS_RECIPES.names()]),
        (["bench"], list(BENCHES)),
    ]


def test_help_lists_every_name_of_its_registry(capsys, monkeypatch):
    """Every list of names a command's help prints is its registry's: all of them, also a
    recipe registered after the help was written."""
    from farsight.train.recipes.autoencoder import AE_RECIPES
    from farsight.train.recipes.dynamics import DYNAMICS_RECIPES, dyn_tiny
    from farsight.train.recipes.lam import LAM_RECIPES

    for book in (AE_RECIPES, DYNAMICS_RECIPES, LAM_RECIPES):
        monkeypatch.setitem(book._recipes, f"{book.kind}_added_later", dyn_tiny)
    for argv, names in registries():
        text = help_text(argv, capsys, monkeypatch)
        missing = [name for name in names if name not in text]
        assert not missing, (argv, missing)
    assert "dynamics_added_later" in help_text(["train", "dynamics"], capsys, monkeypatch)


RECIPE_MODULES = ("autoencoder", "lam", "dynamics")


def test_recipes_and_their_help_import_no_torch(tmp_path):
    """The run configs and their recipe registries import no torch: every recipe builds, and
    the help of ``train`` and ``ablate`` lists them all, in an interpreter that never loads
    torch."""
    result = run_python(
        f"""
        import importlib
        import sys

        for name in {RECIPE_MODULES!r}:
            module = importlib.import_module(f"farsight.train.recipes.{{name}}")
            book = next(v for v in vars(module).values() if type(v).__name__ == "RecipeBook")
            for recipe in book.names():
                book.get(recipe).train.validate()
        from farsight.cli import main

        for argv in [["train", name] for name in {RECIPE_MODULES!r}] + [["ablate"]]:
            try:
                main([*argv, "--help"])
            except SystemExit as e:
                assert e.code == 0, (argv, e.code)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
        assert not loaded, loaded[:5]
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for argv, names in registries():
        if argv[:1] == ["train"] and len(argv) == 2:
            missing = [name for name in names if name not in result.stdout]
            assert not missing, (argv, missing)


def test_quickstart_retrains_a_stage_whose_run_was_deleted(tmp_path):
    from farsight.commands.quickstart import _done, _mark_done

    (tmp_path / "dynamics").mkdir()
    (tmp_path / "dynamics" / "checkpoint.pt").write_bytes(b"x")
    _mark_done(tmp_path, "dynamics")
    assert _done(tmp_path, "dynamics")
    (tmp_path / "dynamics" / "checkpoint.pt").unlink()
    assert not _done(tmp_path, "dynamics")
