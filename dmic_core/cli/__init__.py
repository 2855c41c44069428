"""The ``dmic`` command: a thin argparse layer over the library, JSON out.

Each subcommand lives in its own module under ``dmic_core.cli`` exposing ``register(subparsers)``
(which sets ``func`` on its parser). Exit codes: 0 success, 2 bad input (one line on stderr, no
traceback), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from dmic_core.errors import CodecUnavailableError, DmicInputError
from dmic_core.runtime import configure_allocator

#: Subcommand modules, in the order ``dmic --help`` lists them. Modules that are not there yet
#: are skipped so the command works while capabilities land one by one.
COMMAND_MODULES = (
    "info", "encode", "phantom", "segment", "segment_train", "compress", "sweep", "pretrain",
    "finetune", "experiments", "evaluate", "batch",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmic", description="Diagnosis-oriented CCTA compression.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"dmic_core.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"dmic_core.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_allocator()
    try:
        return int(args.func(args) or 0)
    except (DmicInputError, CodecUnavailableError) as exc:
        print(f"dmic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dmic {args.command}: cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
