"""Write a directory all-or-nothing: stage it hidden next to the target, then rename it in.

The staging directory is `.<name>.moeprune-tmp-<pid>-<random>` in the
target's parent (same filesystem, so the final rename is atomic). A run that
is killed (SIGKILL, power loss) leaves only that hidden directory, never the
target; the next run for the same target removes staging directories whose
process is gone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

from moeprune.errors import UserError

_TMP = ".moeprune-tmp-"
_OLD = ".moeprune-old-"


@contextlib.contextmanager
def staging_dir(target: Path, overwrite: bool):
    """Yield an empty hidden directory beside target; removed again unless published."""
    target = Path(target)
    _refuse_existing(target, overwrite)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = parent / f".{target.name}{_TMP}{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished staging dir to target (replacing it only when overwrite is set)."""
    _fsync_dir(tmp)
    _refuse_existing(target, overwrite)
    if target.exists():
        old = target.parent / f".{target.name}{_OLD}{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)
    _fsync_dir(target.parent)


def remove_stale(target: Path) -> list[Path]:
    """Remove staging/old directories for target left by processes that no longer run."""
    removed = []
    for marker in (_TMP, _OLD):
        for path in target.parent.glob(f".{target.name}{marker}*"):
            pid = path.name[len(f".{target.name}{marker}") :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _refuse_existing(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite:
        raise UserError(
            f"{target} already exists; choose another output directory or allow overwrite to replace it",
            param="overwrite",
        )
    if target.exists() and not target.is_dir():
        raise UserError(
            f"{target} exists and is not a directory; remove it or choose another output directory", param="out_dir"
        )


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
