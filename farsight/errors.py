"""Errors caused by the user's input. The CLI prints them as one line (they name the file,
key or value at fault); anything else is a bug and keeps its traceback."""


class FarsightError(ValueError):
    """Base of all input errors."""


class UsageError(FarsightError):
    """A command-line argument that cannot be honoured."""
