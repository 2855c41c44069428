"""Waiting in tests: poll a condition with a deadline instead of sleeping blindly, and scale every
deadline of the suite for slow or busy machines.

Every deadline a test sets (a wait for a background worker, an AppTest script run, a browser wait,
a subprocess) is a *base* number of seconds, enough on an idle 2-core machine, multiplied by one
factor, ``$DMIC_TEST_SLOWDOWN`` (default :data:`DEFAULT_SLOWDOWN`). A deadline only bounds how long
a broken test hangs: passing tests wait for states (a job finished, an element visible, a thread
ended), never for the clock, so a generous factor costs nothing when everything works.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Iterable

#: Default factor on every deadline: a loaded machine (two CPU burners beside the suite on 2 cores)
#: runs the suite about 3x slower than an idle one; 4 leaves a margin.
DEFAULT_SLOWDOWN = 4.0


def slowdown() -> float:
    """The factor on every deadline: ``$DMIC_TEST_SLOWDOWN`` (at least 1), else the default."""
    raw = os.environ.get("DMIC_TEST_SLOWDOWN", "")
    try:
        return max(1.0, float(raw)) if raw.strip() else DEFAULT_SLOWDOWN
    except ValueError:
        raise ValueError(f"DMIC_TEST_SLOWDOWN must be a number, not {raw!r}") from None


def scaled(seconds: float) -> float:
    """A base deadline in seconds, scaled for this machine."""
    return seconds * slowdown()


def scaled_ms(seconds: float) -> float:
    """:func:`scaled` in milliseconds (Playwright's unit)."""
    return scaled(seconds) * 1000.0


def wait_for(pred: Callable[[], Any], timeout: float = 60.0, what: str = "condition", interval: float = 0.02) -> Any:
    """Return ``pred()``'s first truthy value; fail the test with ``what`` once the deadline has passed.

    ``timeout`` is the base deadline in seconds (scaled by :func:`scaled`).
    """
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what} ({limit:.0f} s; raise DMIC_TEST_SLOWDOWN "
                                 "on a slow machine)")
        time.sleep(interval)


def join_all(threads: Iterable[threading.Thread], timeout: float = 60.0, what: str = "threads") -> None:
    """Wait until every thread has ended (base deadline ``timeout`` s for all of them together)."""
    threads = list(threads)
    wait_for(lambda: not any(t.is_alive() for t in threads), timeout=timeout, what=what, interval=0.05)
