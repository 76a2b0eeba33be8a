"""Training: the generic loop and its parts, shared by every model farsight trains.

    from farsight.train.loop import train            # the loop: model + objective + batches
    from farsight.train.data import step_batches     # resumable batch stream
    from farsight.train.checkpoint import load_checkpoint, save_checkpoint
    from farsight.train.config import TrainConfig, OptimConfig

Model-specific runs (config, recipes, validation hook) live beside them: ``autoencoder.py``.
"""
