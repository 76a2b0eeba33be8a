"""The trainers' import path for device and precision resolution, which lives in
``farsight.precision`` (the latent cache and the commands resolve devices too)."""

from farsight.precision import autocast, resolve_device, resolve_precision

__all__ = ["autocast", "resolve_device", "resolve_precision"]
