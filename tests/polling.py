"""Waiting on background workers in tests: poll a condition with a deadline instead of sleeping blindly."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(pred: Callable[[], Any], timeout: float = 60.0, what: str = "condition", interval: float = 0.02) -> Any:
    """Return ``pred()``'s first truthy value; fail the test with ``what`` once ``timeout`` s have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
