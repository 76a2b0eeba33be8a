import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_store import write_store


@pytest.mark.slow
def test_torchrun_ranks_get_disjoint_complete_shares(tmp_path):
    write_store(tmp_path / "s", [9, 12, 7, 10])
    out = tmp_path / "shares.json"
    probe = Path(__file__).parent / "probes" / "partition.py"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(probe),
            str(tmp_path / "s"),
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    shares = json.loads(out.read_text())
    assert [s["rank"] for s in shares] == [0, 1]
    a, b = ({tuple(c) for c in s["clips"]} for s in shares)
    assert a and b and not a & b
    assert len(a | b) == shares[0]["total"] == len(shares[0]["clips"]) + len(shares[1]["clips"])
