"""One run of the sprite test's recipe (``tests/test_lam_learns.py``) with config overrides, and
its test-split NMI.

    python docs/results/lam/sprite_run.py STEPS [key=value ...]
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from farsight.config import apply_overrides

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
import test_lam_learns as sprites  # noqa: E402


def main(steps: int, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    cfg = apply_overrides(
        sprites.sprite_recipe(sprites.sprite_store(root / "store"), steps), overrides
    )
    start = time.time()
    sprites.train_lam(cfg, root / "run", progress=False)
    test = json.loads((root / "run" / "eval.json").read_text())["test"]
    print(
        f"{time.time() - start:.1f} s  NMI {test['nmi']:.3f} (chance {test['nmi_chance']:.3f})  "
        f"usage {test['usage_entropy']:.3f}  codes used {test['codes_used']:.2f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
