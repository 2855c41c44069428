"""``python -m dmic_core.jobs.worker --workspace DIR``: the detached job runner of a workspace.

Exits 0 at once when another runner serves the workspace; otherwise runs queued tasks with
``--workers`` worker processes until idle for ``--idle-exit`` seconds (0: never).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Sequence

from dmic_core.jobs.executors import EXECUTORS
from dmic_core.jobs.runner import Runner, RunnerBusy


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmic_core.jobs.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, help="folder holding jobs.sqlite")
    parser.add_argument("--workers", type=int, default=None, help="concurrent tasks (default: $DMIC_JOB_WORKERS "
                        "or half the cores, at least 1)")
    parser.add_argument("--executor", default="local", choices=sorted(EXECUTORS))
    parser.add_argument("--idle-exit", type=float, default=120.0, help="seconds idle before exiting (0: never)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    runner = Runner(args.workspace, workers=args.workers, executor=args.executor,
                    idle_exit=args.idle_exit or None)
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    try:
        runner.run()
    except RunnerBusy:
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
