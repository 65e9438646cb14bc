"""The keeper of one engine: a tiny process between the gateway and a vLLM server.

    python app/engines/reaper.py --parent PID --grace S --log PATH --log-max-bytes N --pidfile PATH -- CMD...

Why a separate process: the gateway can die without running any cleanup (SIGKILL,
the OOM killer, a double Ctrl-C). The kernel tells this process when its parent
dies (PR_SET_PDEATHSIG), and it then stops the engine's whole process group:
SIGTERM (with SIGCONT, so a stopped engine can act on it), SIGKILL after the
grace. The engine itself gets a parent-death signal too, so killing this keeper
does not orphan it either. The keeper also owns the engine's output, which is how
engine.log gets rotated, and writes the pidfile a later gateway uses to find a
stale engine (app/engines/pidfile.py).

It runs as a script (not `-m app...`) and imports only the standard library and
psutil, so it starts in milliseconds whatever the working directory is.
Exit code: the engine's, or 128 + the signal that ended it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send `sig` when the parent (thread) dies; False where prctl does not exist."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def watch_parent_by_polling(parent: int, on_death) -> None:
    """Fallback without prctl: notice the parent's death by being re-parented."""

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        on_death()

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


class RotatingLog:
    """engine.log, moved to engine.log.1 (one old file kept) once it grows past max_bytes."""

    def __init__(self, path: Path, max_bytes: int):
        self.path, self.max_bytes = path, max_bytes
        self.handle = open(path, "ab")
        self.size = self.handle.tell()

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.handle.flush()
        self.size += len(data)
        if self.size >= self.max_bytes:
            self.handle.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self.handle = open(self.path, "ab")
            self.size = 0


def copy_output(fd: int, log: RotatingLog) -> None:
    while chunk := os.read(fd, 65536):
        log.write(chunk)
    os.close(fd)


def signal_group(pgid: int, *signals: int) -> None:
    for sig in signals:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return


class Stopper:
    """Stop the engine's group: SIGTERM (and SIGCONT) now, SIGKILL after the grace (the SIGALRM handler).

    It runs as a signal handler and is also called directly (the gateway died while the engine was being
    spawned), so a signal can arrive while it runs and run it again inside itself. It therefore takes no
    lock: a threading.Event here deadlocked a keeper whose parent-death SIGTERM arrived inside Event.set()
    (its Condition lock is not re-entrant; found by CI, the engine outlived the SIGKILLed gateway). A plain
    attribute is enough: a handler runs between bytecodes, and a second round of signals is harmless."""

    def __init__(self, engine_pgid: int, grace: float):
        self.engine_pgid, self.grace = engine_pgid, grace
        self.started = False

    def __call__(self, *_ignored) -> None:
        if self.started:
            return
        self.started = True
        signal_group(self.engine_pgid, signal.SIGTERM, signal.SIGCONT)
        signal.setitimer(signal.ITIMER_REAL, self.grace)


def write_pidfile(path: Path, parent: int, engine: subprocess.Popen, cmd: list[str]) -> None:
    import psutil

    def created(pid: int) -> float | None:
        try:
            return psutil.Process(pid).create_time()
        except psutil.Error:
            return None

    record = {
        "gateway_pid": parent,
        "gateway_create_time": created(parent),
        "reaper_pid": os.getpid(),
        "reaper_create_time": created(os.getpid()),
        "engine_pid": engine.pid,
        "engine_create_time": created(engine.pid),
        "engine_cmdline": cmd,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def remove_pidfile(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("reaper_pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        return


def run(args: argparse.Namespace) -> int:
    # Set before anything else, then check: a parent that died before prctl took effect
    # would never send the signal.
    prctl = set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != args.parent:
        return 1
    log = RotatingLog(Path(args.log), args.log_max_bytes)
    read_end, write_end = os.pipe()
    try:
        engine = subprocess.Popen(
            args.cmd,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end,
            start_new_session=True,
            # Runs in the child before exec: the engine stops too if this keeper is SIGKILLed.
            preexec_fn=lambda: set_parent_death_signal(signal.SIGTERM),
        )
    except OSError as exc:  # e.g. the launcher does not exist: say so where the gateway looks (the log tail)
        log.write(f"moeprune: cannot start the engine: {exc}\n".encode())
        return 127
    os.close(write_end)
    copier = threading.Thread(target=copy_output, args=(read_end, log), daemon=True, name="engine-log")
    copier.start()
    pidfile = Path(args.pidfile)
    write_pidfile(pidfile, args.parent, engine, args.cmd)
    stop = Stopper(engine.pid, args.grace)
    signal.signal(signal.SIGALRM, lambda *_: signal_group(engine.pid, signal.SIGKILL))
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the gateway's to handle, not ours
    if not prctl:
        watch_parent_by_polling(args.parent, lambda: os.kill(os.getpid(), signal.SIGTERM))
    if os.getppid() != args.parent:  # the gateway died while the engine was being spawned
        stop()

    if hasattr(os, "waitid"):
        # Wait without reaping, so the group id cannot be reused before the stragglers are killed.
        os.waitid(os.P_PID, engine.pid, os.WEXITED | os.WNOWAIT)
        signal_group(engine.pid, signal.SIGKILL)  # workers the engine left behind
        code = engine.wait()
    else:
        code = engine.wait()
        signal_group(engine.pid, signal.SIGKILL)
    signal.setitimer(signal.ITIMER_REAL, 0)
    copier.join(timeout=5)
    remove_pidfile(pidfile)
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="keep one engine; stop its process group when the gateway dies")
    parser.add_argument("--parent", type=int, required=True, help="the gateway's pid")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--log", required=True)
    parser.add_argument("--log-max-bytes", type=int, default=20 * 1024 * 1024)
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    args.cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not args.cmd:
        parser.error("no engine command after --")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
