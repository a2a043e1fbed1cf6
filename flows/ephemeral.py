"""Prefect's temporary server ends with the command that started it.

Prefect 3 starts it as a child process (prefect/server/api/server.py, SubprocessASGIServer)
and stops it at exit; a command killed by SIGKILL never gets there, and the server used to
live on. Now each such server gets a watcher, `python -m flows.ephemeral PARENT SERVER
STARTED`: when the command is gone it stops the server (SIGTERM, then SIGKILL) and exits; it
also exits when the server does. (PR_SET_PDEATHSIG would not do: it fires when the *thread*
that started the child ends, and Prefect may start the server from a worker thread.)
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 10.0


def _started(pid: int) -> str:
    """The process's start time (clock ticks since boot; "?" without /proc): a pid's identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat[stat.rfind(")") + 2 :].split()[19]


def _alive(pid: int, started: str) -> bool:
    """Whether `pid` is still the process that started at `started` (and not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if started != "?":
            return False
        try:  # no /proc (not Linux): the pid alone
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[0] not in ("Z", "X") and started in ("?", fields[19])


def guard() -> None:
    """Give every temporary server Prefect starts in this process a watcher."""
    from prefect.server.api.server import SubprocessASGIServer

    start = SubprocessASGIServer._run_uvicorn_command
    if getattr(start, "_seqflow", False):
        return

    def start_and_watch(self):
        proc = start(self)
        watch(proc.pid)
        return proc

    start_and_watch._seqflow = True
    SubprocessASGIServer._run_uvicorn_command = start_and_watch


def watch(server: int) -> subprocess.Popen:
    args = [str(os.getpid()), str(server), _started(server)]
    # its own session: Ctrl-C in the terminal is the command's to handle, not the watcher's
    return subprocess.Popen([sys.executable, "-m", "flows.ephemeral", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def stop(server: int, started: str) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, GRACE_S)):
        try:
            os.kill(server, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(server, started):
                return
            time.sleep(0.1)


def main(parent: int, server: int, started: str) -> None:
    while _alive(server, started):
        if os.getppid() != parent:  # the command is gone: this was reparented
            stop(server, started)
            return
        time.sleep(POLL_S)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
