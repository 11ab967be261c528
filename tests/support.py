"""Helpers the subprocess-driven tests share: a free loopback port, `zhuanlan` against a database,
waiting for a condition, and the web app on a loopback port in a thread."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

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


def wait_for(
    what: str, predicate: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> Any:
    """The first truthy value of `predicate` within `timeout` s; fails early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the scheduler exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Base URL of a WSGI app served by werkzeug on a free 127.0.0.1 port in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def browser_page(chromium: Any, width: int, height: int, **options: Any) -> Iterator[Any]:
    """A fresh zh-CN page of the session's Chromium at a `width` × `height` viewport, closed after."""
    context = chromium.new_context(locale="zh-CN", viewport={"width": width, "height": height}, **options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()
