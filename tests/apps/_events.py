"""Shared by the test apps: record what happened to them, one line per event.

The file comes from $OXGATE_TEST_EVENTS (set by the `oxgate` fixture), so a test can
see close() calls and re-raises even when the client never learns about them.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()


def record(event: str) -> None:
    path = os.environ.get("OXGATE_TEST_EVENTS")
    if not path:
        return
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(event + "\n")
