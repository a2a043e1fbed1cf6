"""SIGINT and SIGTERM: the one signal handler of the project.

While a training loop runs, the first signal only raises a flag: the loop stops at the next
step boundary (`check()`), so the checkpoint of the last finished epoch is what survives, and
`Interrupted` travels up through the flow, which marks its MLflow runs KILLED. Outside a loop
(or at a second signal) `Interrupted` is raised at once in the main thread.
"""

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training was stopped by a signal; `kept` is the checkpoint that survives, if any."""

    def __init__(self, signum: int, kept: str | None = None):
        self.signum, self.kept = signum, kept
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's: 130 for SIGINT, 143 for SIGTERM


_pending: list[int] = []  # signals received while a loop runs
_loops = [0]  # training loops running now (any thread)


def _handler(signum, frame) -> None:
    if _loops[0] and not _pending:
        _pending.append(signum)  # the loop raises at its next step
        return
    raise Interrupted(signum)


@contextmanager
def handled():
    """Route SIGINT/SIGTERM to the handler above (from the main thread only; elsewhere the
    main thread's own `handled()`, e.g. the CLI's, does it)."""
    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.signal(s, _handler) for s in SIGNALS} if main else {}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


@contextmanager
def training():
    """Marks a training loop as running: signals wait for its next `check()`."""
    _loops[0] += 1
    try:
        with handled():
            yield
    finally:
        _loops[0] -= 1
        if not _loops[0]:
            _pending.clear()


def pending() -> int | None:
    return _pending[0] if _pending else None


def check(kept: str | None = None) -> None:
    """Raise Interrupted if a signal arrived (called by the loop between steps)."""
    if _pending:
        raise Interrupted(_pending[0], kept)
