"""HEVC codec backends behind one interface (:class:`dmic_core.codecs.base.Codec`).

Importing this package registers every backend in :data:`CODECS`; whether one can run here
(extension built, HM binaries present) is asked at use time, so a missing backend never breaks
the import.
"""

from __future__ import annotations

from typing import Any

from dmic_core.codecs import hm as _hm  # noqa: F401  (registers "hm")
from dmic_core.codecs import x265 as _x265_backend  # noqa: F401  (registers "x265")
from dmic_core.codecs.base import CODECS, Codec, EncodeResult, register_codec
from dmic_core.errors import CodecUnavailableError

__all__ = ["CODECS", "Codec", "EncodeResult", "available_codecs", "get_codec", "register_codec"]


def get_codec(name: str, **kwargs: Any) -> Codec:
    """An instance of the backend ``name``, configured with ``kwargs``.

    Raises:
        CodecUnavailableError: unknown name, or the backend cannot run here (with the reason).
    """
    try:
        cls = CODECS[name]
    except KeyError:
        raise CodecUnavailableError(
            f"unknown codec '{name}'; known: {', '.join(sorted(CODECS))}") from None
    reason = cls.availability()
    if reason is not None:
        raise CodecUnavailableError(f"codec '{name}' is unavailable: {reason}")
    return cls(**kwargs)


def available_codecs() -> dict[str, str | None]:
    """Every registered backend and ``None`` if it can run here, else the reason it cannot."""
    return {name: cls.availability() for name, cls in sorted(CODECS.items())}
