"""farsight: action-conditioned world models you can record, train, play and measure."""

__version__ = "0.1.0"
