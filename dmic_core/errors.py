"""Exceptions with messages meant for people.

Every error that bad input can cause is a :class:`DmicInputError` whose message names the file
and the problem in one line; the CLI prints it and exits with status 2, the app shows it in the
page. Anything else is a bug and may carry a traceback.
"""

from __future__ import annotations

from pathlib import Path


class DmicError(Exception):
    """Base class of all DMIC errors."""


class DmicInputError(DmicError, ValueError):
    """Input the user supplied cannot be used (unreadable, wrong shape, unsafe, ...)."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        text = message if path is None else f"{Path(path).name}: {message}"
        super().__init__(text)


class CodecUnavailableError(DmicError, RuntimeError):
    """A codec backend is missing or cannot be driven (wrong x265 build, no HM binary, ...)."""


class CodecError(DmicError, RuntimeError):
    """An encoder or decoder failed while coding."""
