"""Training: the generic loop and its parts, shared by every model farsight trains.

    from farsight.train.loop import train            # the loop: model + objective + batches
    from farsight.train.data import step_batches     # resumable batch stream
    from farsight.train.checkpoint import load_checkpoint, save_checkpoint
    from farsight.train.config import TrainConfig, OptimConfig
    from farsight.train.trainer import Trainer, run_training   # the skeleton of every trainer

Every trainer fills in one skeleton (``trainer.py``: refusing or resuming a run folder,
config.json, the final evaluation). A model's run config and recipes are in ``recipes/`` (no
torch); its trainer (data, model, objective, validation) beside the loop: ``autoencoder.py``,
``lam.py``, ``dynamics.py`` (with ``dynamics_data.py``, ``dynamics_objective.py``,
``dynamics_validation.py``).
"""
