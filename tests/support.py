"""Helpers the subprocess-driven tests share: a free loopback port, the installed `zhuanlan`
console script (what users run, not `python -m`), `zhuanlan serve` as a child process, waiting for
a condition, and a WSGI app on a loopback port in a thread."""

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
ZHUANLAN = Path(sys.executable).with_name("zhuanlan")  # the console script `pip install` wrote


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A free port on 127.0.0.1, never one this process was given before: the kernel may hand the
    same ephemeral port to two probes in a row, and a test that starts two servers needs two."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def zhuanlan_argv(*args: str) -> list[str]:
    """The command line of the installed console script; fails (never skips) when it is missing."""
    if not ZHUANLAN.exists():
        raise AssertionError(f"{ZHUANLAN} is missing: install the project (`make install`)")
    return [str(ZHUANLAN), *args]


def run_zhuanlan(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`zhuanlan ARGS…` (the console script) to completion, its output captured as text."""
    return subprocess.run(
        zhuanlan_argv(*args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env if env is not None else dict(os.environ),
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
def serving_app(app: Any) -> Iterator[str]:
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


def run_cli(cfg: Path, db_url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`zhuanlan --config CFG ARGS…` in a subprocess, on the database `db_url`."""
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": db_url}
    return run_zhuanlan("--config", str(cfg), *args, env=env, timeout=timeout)


def wait_for_port(port: int, proc: subprocess.Popen[str], seconds: float = 30) -> None:
    """Until something listens on 127.0.0.1:`port`; fails if `proc` exits first or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"zhuanlan exited ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def serving(cfg: Path, port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`zhuanlan --config CFG serve` on 127.0.0.1:`port`, listening; stopped (SIGTERM) afterwards."""
    proc = subprocess.Popen(
        zhuanlan_argv("--config", str(cfg), "serve", "--host", "127.0.0.1", "--port", str(port)),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
