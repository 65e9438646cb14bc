"""A throwaway PostgreSQL server on loopback for tests: Debian's `postgresql` binaries, initdb in a temp dir.

initdb and postgres refuse to run as root, so as root the server runs as the
`postgres` user the Debian package creates (through `runuser`). Nothing is
installed or started system-wide; `stop()`/`start()` let a test take the
database away mid-run and bring it back with its data.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from testkit.vllm_server import free_port

INSTALL_HINT = "install Debian's `postgresql` package (bash scripts/system-packages.sh does)"


def postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def why_unavailable() -> str | None:
    """None when a test server can be started here, else the reason (for pytest.skip)."""
    if postgres_bin() is None:
        return f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without `runuser` to start PostgreSQL as its own user"
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return f"running as root and there is no `postgres` user to run the server: {INSTALL_HINT}"
    return None


class PostgresServer:
    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        # Not under pytest's tmp dir: as root that is private (0700) and the postgres user could not enter it.
        self.root = Path(tempfile.mkdtemp(prefix="moeprune-pg-"))
        self.data = self.root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    def init(self) -> PostgresServer:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"
        )
        return self.start()

    def start(self) -> PostgresServer:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)
