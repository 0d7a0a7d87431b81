"""Stopping the daemon on SIGTERM or SIGINT, within a bound whatever holds it.

The handlers are plain `signal` handlers, not the event loop's: Python runs them in the main
thread between two bytecodes, so they run even while the loop is busy or blocked. The first
signal asks the loop to stop (a clean shutdown) and starts a watchdog thread; when the shutdown
has not ended the process `grace` seconds later (a broker that hangs, a task that does not
yield), or at a second signal, the process logs why with every thread's stack and exits. An
embedded broker left running then is adopted by the next start, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

__all__ = ["STOP_GRACE", "StopSignals"]

log = logging.getLogger("shoal.daemon")

# after SIGTERM/SIGINT, the daemon exits at the latest this much later, stopped cleanly or not
STOP_GRACE = 5.0


class StopSignals:
    def __init__(self, stop: Callable[[], None], pid_file: Path, grace: float = STOP_GRACE):
        self._stop = stop
        self._pid_file = pid_file
        self._grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signalled = False

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread (tests)
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._signalled:
            self._force_exit(f"a second {name} came before the daemon had stopped")
        self._signalled = True
        why = f"the daemon did not stop within {self._grace:g} s of {name}"
        watchdog = threading.Timer(self._grace, self._force_exit, (why,))
        watchdog.daemon = True
        watchdog.start()
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                self._loop.call_soon_threadsafe(self._stop)

    def _force_exit(self, why: str) -> None:
        log.error("%s: exiting now (the stacks of its threads follow)", why)
        faulthandler.dump_traceback(all_threads=True)
        with contextlib.suppress(OSError):
            self._pid_file.unlink()
        logging.shutdown()
        os._exit(1)
