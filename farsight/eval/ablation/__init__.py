"""The ablation grid (``farsight ablate``): train and evaluate variants x seeds, then report.

- ``spec``: what defines a grid (``AblateSpec``), each cell's run config, where its files live.
- ``runner``: trains, resumes and evaluates the cells not finished yet, one at a time.
- ``flops``: the FLOPs of one training step of a cell's config.
- ``tb_events``: the per-head gradient cosines a run logged to TensorBoard.
- ``report``: OUT/README.md and its plots and tables from the finished runs.

Files of a grid:

    OUT/ablate.json                   the grid's recipe, overrides, data and eval settings
    OUT/<variant>/flops.json          FLOPs of one training step (FlopCounterMode), once
    OUT/<variant>/seed<k>/            the training run (checkpoint, metrics.jsonl, tb/)
    OUT/<variant>/seed<k>/run.json    steps, training and evaluation wall time
    OUT/<variant>/seed<k>/eval/       ``farsight eval``'s files; README.md marks it finished
    OUT/README.md, *.png, metrics.*   the report

Equal compute means equal optimizer steps: every run trains the recipe's ``train.steps``
with the same batch size and clip length (the grid refuses a ``train.max_minutes`` budget,
which would make the step count depend on how busy the machine is). The variants differ in
FLOPs per step (the far heads cost extra), so the report gives FLOPs per step and the wall
time of each run next to the metrics.

Resuming: a run whose eval/README.md exists is skipped; a run with a checkpoint but no eval
continues training from the checkpoint (exactly: batches and noise are functions of the step),
then is evaluated; a run folder without a checkpoint is started over. Rerunning with other
recipe, overrides, data or eval settings into the same OUT is refused (``ablate.json``); adding
variants or seeds is fine.

Seeds: run k trains with ``train.seed = k`` (initialisation, batch order, noise). Every run is
evaluated on the same clips with the same eval seed, so variants are compared on identical
rollout prompts and the seed is the only unit of replication (t intervals over seeds).
"""

from farsight.eval.ablation.report import write_ablation_report
from farsight.eval.ablation.runner import run_grid
from farsight.eval.ablation.spec import AblateSpec, check_spec, run_config

__all__ = ["AblateSpec", "check_spec", "run_config", "run_grid", "write_ablation_report"]
