"""``farsight ablate``: the grid trains and evaluates each cell once, resumes an interrupted
one from its checkpoint, refuses a changed spec, and writes a report; ``farsight eval`` CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from farsight.cli import main
from farsight.config import ConfigError
from farsight.errors import UsageError
from farsight.eval.ablation import AblateSpec, check_spec, run_config, run_grid
from farsight.eval.run import EvalConfig
from farsight.eval.variants import DEFAULT_GRID, VARIANTS
from farsight.sampling import SamplingConfig
from farsight.train.autoencoder import train_autoencoder
from farsight.train.checkpoint import load_checkpoint
from farsight.train.dynamics import train_dynamics
from farsight.train.recipes.autoencoder import AE_RECIPES
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES

pytestmark = pytest.mark.usefixtures("one_thread")


def spec_for(world: Path, **eval_kw) -> AblateSpec:
    return AblateSpec(
        recipe="dyn_tiny",
        data=str(world / "store"),
        autoencoder=str(world / "ae"),
        # grad cosines every 2 steps (the report plots them); no validation rollout videos
        overrides=("grad_cosine_every=2", "data.sample_frames=0"),
        eval=EvalConfig(
            split="all",
            clips=1,
            horizon=4,
            n_boot=20,
            sampling=SamplingConfig(steps=1),
            **eval_kw,
        ),
    )


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


class Spy:
    """Counts training calls (and their resume flag) and forwards them to train_dynamics."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, out, resume=False, progress=True):
        self.calls.append((out.parent.name, resume))
        return train_dynamics(cfg, out, resume=resume, progress=progress)


def test_variants_edit_only_what_they_ablate():
    assert set(DEFAULT_GRID) <= set(VARIANTS) and len(DEFAULT_GRID) == 8
    spec = AblateSpec(
        recipe="abl_cpu",
        data="d",
        autoencoder="a",
        overrides=("train.steps=7",),
        token_autoencoder="t",
    )
    cfgs = {v: run_config(spec, v, seed=2) for v in VARIANTS}
    heads = {v: c.model.heads for v, c in cfgs.items()}
    assert heads["next_frame"].offsets == (1,) and heads["contiguous"].offsets == (1, 2, 3, 4)
    assert heads["skip_fullres"].head_resolutions == (1, 1, 1, 1)
    assert heads["skip_cascade"].head_resolutions == (1, 2, 4, 8)
    assert heads["skip_cascade_aux"].aux_weight > 0 and heads["skip_cascade"].aux_weight == 0
    assert heads["skip_cascade_early"].branch_layer == -2
    assert heads["skip_cascade_multires"].multires
    assert cfgs["nf_diffusion"].objective.kind == "next_frame"
    genie_variants = ("maskgit", "maskgit_skip_cascade")
    assert {
        c.objective.kind for v, c in cfgs.items() if v not in ("nf_diffusion", *genie_variants)
    } == {"diffusion_forcing"}
    # MaskGIT variants: the token autoencoder's FSQ tokens, the same heads as their twins.
    assert all(cfgs[v].objective.kind == "maskgit" for v in genie_variants)
    assert {v: c.data.autoencoder for v, c in cfgs.items() if c.data.autoencoder != "a"} == {
        v: "t" for v in genie_variants
    }
    assert cfgs["maskgit"].model.heads.offsets == (1,)
    assert cfgs["maskgit_skip_cascade"].model.heads == cfgs["skip_cascade"].model.heads
    genie = DYNAMICS_RECIPES.get("dyn_maskgit").sampling  # they roll out as the recipe does
    for v in genie_variants:
        assert (cfgs[v].sampling.steps, cfgs[v].sampling.temperature) == (
            genie.steps,
            genie.temperature,
        )
    # Equal compute: one model size, step count, batch and clip for every variant; seed set.
    assert {(c.model.width, c.train.steps, c.train.batch_size) for c in cfgs.values()} == {
        (128, 7, 8)
    }
    assert all(c.train.seed == 2 for c in cfgs.values())
    with pytest.raises(ConfigError, match="unknown variant 'bogus'"):
        run_config(spec, "bogus", 0)
    no_tokens = AblateSpec(recipe="abl_cpu", data="d", autoencoder="a")
    with pytest.raises(UsageError, match="variant maskgit trains MaskGIT.*--token-autoencoder"):
        run_config(no_tokens, "maskgit", 0)


@pytest.mark.slow
def test_grid_compares_maskgit_on_tokens_with_diffusion(arena_world, tmp_path):
    fsq = AE_RECIPES.get("ae_tiny")
    fsq.model.kind, fsq.model.fsq_levels = "fsq", (5, 3, 3, 3)
    fsq.data.path = str(arena_world / "store")
    fsq.train.steps = 2
    train_autoencoder(fsq, tmp_path / "fsq", progress=False)
    spec = spec_for(arena_world)
    # A continuous autoencoder as the token one is refused before anything trains.
    spec.token_autoencoder = str(arena_world / "ae")
    with pytest.raises(UsageError, match="is a 'continuous' autoencoder.*need an fsq one"):
        run_grid(spec, tmp_path / "bad", ["next_frame", "maskgit"], [0], progress=False)
    assert not (tmp_path / "bad" / "next_frame").exists()
    # Each run samples as its config says (the variant sets MaskGIT's steps).
    spec.eval.sampling = None
    spec.token_autoencoder = str(tmp_path / "fsq")
    out = tmp_path / "grid"
    run_grid(spec, out, ["next_frame", "maskgit"], [0], progress=False)
    mg = load_checkpoint(out / "maskgit" / "seed0")
    assert mg["config"]["objective"]["kind"] == "maskgit"
    assert mg["config"]["data"]["autoencoder"] == str(tmp_path / "fsq")
    assert mg["extra"]["autoencoder"]["config"]["model"]["kind"] == "fsq"
    flops = json.loads((out / "maskgit" / "flops.json").read_text())["flops_per_step"]
    assert flops > 0
    readme = (out / "README.md").read_text()
    assert "8 MaskGIT steps, temperature" in readme and "4 ddim steps" in readme
    ceiling = next(line for line in readme.splitlines() if "autoencoder ceiling" in line)
    assert "`ae` " in ceiling and "`fsq` " in ceiling and ceiling.count(" dB") == 2
    # FSQ code values and continuous latents are different spaces: no latent MSE across them.
    assert "no latent MSE" in readme and "latent_mse" not in readme
    assert "latent_mse" in (out / "maskgit" / "seed0" / "eval" / "metrics.csv").read_text()


@pytest.mark.slow
def test_grid_skips_finished_runs_and_resumes_an_interrupted_one(
    arena_world, tmp_path, monkeypatch
):
    out = tmp_path / "grid"
    spec = spec_for(arena_world)
    first = Spy()
    run_grid(spec, out, ["next_frame", "skip_cascade"], [0], progress=False, train_fn=first)
    assert first.calls == [("next_frame", False), ("skip_cascade", False)]
    for v in ("next_frame", "skip_cascade"):
        run = json.loads((out / v / "seed0" / "run.json").read_text())
        assert run["steps"] == 6 and run["train_seconds"] > 0
        assert json.loads((out / v / "flops.json").read_text())["flops_per_step"] > 0
    readme = (out / "README.md").read_text()
    assert "skip_cascade" in readme and "GFLOP / step" in readme and "equal optimizer" in readme
    assert (out / "strip_clip0.png").exists() and (out / "grad_cos_skip_cascade.png").exists()
    assert (out / "curve_psnr_s1.png").exists()
    before = snapshot(out / "next_frame") | snapshot(out / "skip_cascade")

    # A third variant is interrupted right after its first checkpoint (step 3 of 6).
    from farsight.train import loop

    original = loop.save_checkpoint

    def crash_after_save(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", crash_after_save)
    variants = ["next_frame", "skip_cascade", "contiguous"]
    with pytest.raises(KeyboardInterrupt):
        run_grid(spec, out, variants, [0], progress=False, train_fn=Spy())
    monkeypatch.undo()
    assert load_checkpoint(out / "contiguous" / "seed0")["step"] == 3

    again = Spy()
    run_grid(spec, out, variants, [0], progress=False, train_fn=again)
    assert again.calls == [("contiguous", True)]  # finished runs are not touched
    assert snapshot(out / "next_frame") | snapshot(out / "skip_cascade") == before
    assert load_checkpoint(out / "contiguous" / "seed0")["step"] == 6
    assert (out / "contiguous" / "seed0" / "eval" / "README.md").exists()
    assert "contiguous" in (out / "README.md").read_text()

    with pytest.raises(UsageError, match="ablate.json was made with eval"):
        run_grid(spec_for(arena_world, seed=5), out, variants, [0], progress=False, train_fn=again)

    # A grid made before the spec had token_autoencoder resumes: the missing key is its default.
    stored = json.loads((out / "ablate.json").read_text())
    del stored["token_autoencoder"]
    (out / "ablate.json").write_text(json.dumps(stored))
    check_spec(out, spec)
    with pytest.raises(UsageError, match="token_autoencoder"):
        check_spec(out, dataclasses.replace(spec, token_autoencoder="/some/fsq"))


@pytest.mark.slow
def test_eval_and_ablate_commands(arena_world, tmp_path, capsys):
    out = tmp_path / "grid"
    code = main(
        [
            "ablate",
            "--recipe",
            "dyn_tiny",
            "--variants",
            "next_frame",
            "--seeds",
            "1",
            "--data",
            str(arena_world / "store"),
            "--autoencoder",
            str(arena_world / "ae"),
            "--out",
            str(out),
            "--steps",
            "2",
            "--eval-episodes",
            "1",
            "--eval-horizon",
            "2",
            "--eval-split",
            "all",
            "--quiet",
            "data.sample_frames=0",
        ]
    )
    assert code == 0 and (out / "README.md").exists()
    ckpt = out / "next_frame" / "seed0"
    args = ["eval", "--ckpt", str(ckpt), "--data", str(arena_world / "store"), "--split", "all"]
    args += ["--episodes", "1", "--horizon", "2", "--quiet", "--sampling.steps", "1"]
    assert main([*args, "--out", str(tmp_path / "eval")]) == 0
    assert (tmp_path / "eval" / "README.md").exists()
    assert "1 clips x 2 frames" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "e2"), "--sampling.sampler", "nope"]) == 2
    assert "sampling.sampler" in capsys.readouterr().err
    assert main(["ablate", "--out", str(tmp_path / "none"), "--report-only"]) == 2
