"""Reading a run's TensorBoard scalars for its curves (``farsight.train.curves``)."""

from __future__ import annotations

import pytest
from torch.utils.tensorboard import SummaryWriter

from farsight.errors import UsageError
from farsight.train.curves import read_timed_scalars, write_run_comparison


def test_wall_clock_of_a_resumed_run_leaves_out_its_pause(tmp_path):
    # Two sessions of one run, an hour apart; the second logs step 20 again (after its
    # checkpoint at step 10), as a resumed run does.
    for suffix, logged in (
        (".a", [(0, 1000.0), (10, 1030.0), (20, 1060.0)]),
        (".b", [(20, 4600.0), (30, 4620.0)]),
    ):
        writer = SummaryWriter(tmp_path / "tb", filename_suffix=suffix)
        for step, wall in logged:
            writer.add_scalar("val/loss", float(step), step, walltime=wall)
        writer.close()
    steps, values, seconds = read_timed_scalars(tmp_path)["val/loss"]
    assert steps == [0, 10, 20, 30] and values == [0.0, 10.0, 20.0, 30.0]
    assert seconds == pytest.approx([0.0, 30.0, 60.0, 80.0])


def test_run_comparison_draws_each_panel_and_names_a_missing_tag(tmp_path):
    for name in ("a", "b"):
        writer = SummaryWriter(tmp_path / name / "tb")
        for step in (0, 10, 20):
            writer.add_scalar("val/nmi", step / 100, step, walltime=1000.0 + step)
        writer.close()
    runs = {"a": tmp_path / "a", "b": tmp_path / "b"}
    png = write_run_comparison(runs, tmp_path / "nmi.png", [("val/nmi", "NMI", "NMI")])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="logged no val/gain"):
        write_run_comparison(runs, tmp_path / "gain.png", [("val/gain", "gain", "gain")])
    assert not (tmp_path / "gain.png").exists()
