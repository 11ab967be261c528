"""Helpers the subprocess-driven tests share: a free loopback port and `zhuanlan` against a database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(cfg: Path, db_url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`zhuanlan --config CFG ARGS…` in a subprocess, on the database `db_url`."""
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "zhuanlan_cli", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
        check=False,
    )
