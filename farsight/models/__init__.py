"""Networks of farsight: pure nn.Modules (no noise sampling, losses, I/O or parallelism)."""
