"""Configs shared by training runs: optimizer, schedule, precision, intervals, and how a
multi-process run shares its model (``farsight.parallel``). No torch is imported here."""

from __future__ import annotations

from dataclasses import dataclass, field

from farsight.config import ConfigError


@dataclass
class OptimConfig:
    lr: float = 3e-4
    """Peak learning rate (AdamW)."""
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    """Applied to weight matrices and conv kernels only, never to norms, biases, embeddings."""
    eps: float = 1e-8
    warmup_steps: int = 200
    """Linear warmup from 0 to ``lr``."""
    min_lr_ratio: float = 0.05
    """Cosine decay ends at ``lr * min_lr_ratio`` on the last step."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping (the norm is still logged)."""


@dataclass
class TrainConfig:
    steps: int = 10_000
    batch_size: int = 32
    """Per-rank batch size."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema_decay: float = 0.999
    """EMA of the weights; the decay warms up as min(decay, (1 + step) / (10 + step))."""
    precision: str = "auto"
    """bf16 (autocast), fp32, or auto: bf16 where the device runs it fast, else fp32."""
    device: str = "auto"
    """cpu, cuda, cuda:N or auto (cuda if available)."""
    seed: int = 0
    workers: int = 1
    """DataLoader worker processes (0: load in the training process)."""
    log_every: int = 25
    val_every: int = 500
    ckpt_every: int = 500
    max_minutes: float = 0.0
    """Wall-clock training budget; 0: none. The run stops (with a checkpoint) when it is spent,
    and the cosine LR decay follows whichever of steps and minutes runs out first, so a
    budgeted run always anneals (its LR then depends on elapsed time: resume is not bit-exact)."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms: slower, for exact-resume checks."""
    threads: int = 0
    """torch intra-op threads; 0 keeps torch's default (one per core)."""
    init_from: str = ""
    """A checkpoint (file or run folder) whose EMA weights this run starts from: fine-tuning a
    trained model under another recipe, with a fresh optimizer and LR schedule from step 0. It
    must be of the same kind and model config (and, for dynamics, read the same autoencoder's
    latents); "" starts from random weights. A resumed run takes its weights from its own
    checkpoint instead."""

    def validate(self) -> TrainConfig:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"train.steps={self.steps} and train.batch_size must be >= 1")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(
                f"train.precision={self.precision!r}; choose auto, bf16 or fp32 "
                "(fp16 is not offered: it is unusably slow on CPUs and needs loss scaling)"
            )
        if min(self.log_every, self.val_every, self.ckpt_every) < 0:
            raise ConfigError("train.log_every, val_every and ckpt_every must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay={self.ema_decay} must be in [0, 1)")
        return self


@dataclass
class ParallelConfig:
    strategy: str = "ddp"
    """How a multi-process run shares the model: ``ddp`` (replicas) or ``fsdp`` (FSDP2
    sharding of parameters, gradients and optimizer state)."""
    backend: str = "auto"
    """Process-group backend: ``auto`` (nccl on CUDA, gloo on CPU), ``nccl`` or ``gloo``."""
