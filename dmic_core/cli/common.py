"""Argument helpers shared by the subcommands (one parser per concern, JSON on stdout)."""

from __future__ import annotations

import json
import sys
from typing import Any

from dmic_core.codecs import CODECS
from dmic_core.defaults import BIT_DEPTHS, default_window
from dmic_core.jsonio import to_jsonable

#: Engine names: the codec registry's keys, never a hand-kept list.
CODEC_CHOICES: tuple[str, ...] = tuple(CODECS)


def add_coding_arguments(parser) -> None:
    """``--codec --preset --bit-depth --window``: how frames are coded."""
    parser.add_argument("--codec", default="x265", choices=CODEC_CHOICES, help="HEVC engine (default x265)")
    parser.add_argument("--preset", default=None, help="x265 preset (default: the documented one)")
    parser.add_argument("--bit-depth", type=int, default=12, choices=BIT_DEPTHS,
                        help="coded sample depth (default 12: HU -1024..3071 kept whole)")
    parser.add_argument("--window", type=parse_window, default=None, metavar="LO,HI",
                        help="HU window [LO, HI) mapped onto the sample range (default: "
                             + ", ".join(f"{lo:g},{hi:g} at {b} bits" for b in BIT_DEPTHS
                                         for lo, hi in [default_window(b)]) + ")")


def add_task_coding_arguments(parser) -> None:
    """``--bit-depth --codec --preset`` of the commands that score a task (compress, sweep): the
    task coding's defaults (:data:`dmic_core.pipeline.TASK_CODING`)."""
    from dmic_core.pipeline import TASK_CODING

    parser.add_argument("--bit-depth", type=int, default=TASK_CODING.bit_depth, choices=BIT_DEPTHS)
    parser.add_argument("--codec", default=TASK_CODING.codec, choices=CODEC_CHOICES,
                        help="HEVC engine (default x265; hm needs scripts/setup.sh --with-hm)")
    parser.add_argument("--preset", default=None, help="x265 preset (not for --codec hm)")


def parse_window(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise ValueError(f"window must be LO,HI in HU, got {text!r}") from exc
    if hi <= lo:
        raise ValueError(f"window upper bound must exceed lower bound, got {text!r}")
    return lo, hi


def print_json(payload: Any) -> None:
    json.dump(to_jsonable(payload), sys.stdout, indent=2)
    sys.stdout.write("\n")
