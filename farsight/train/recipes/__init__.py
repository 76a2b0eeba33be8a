"""Run configs and their named recipes, one module per trainer: ``autoencoder``, ``lam``,
``dynamics``."""
