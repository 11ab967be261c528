"""`zhuanlan demo` as an operator meets it (issue 21, point 12), through the installed script in
subprocesses: run again into the same directory it adds and sends nothing, whatever the other ports;
it ends by saying how to run commands against the demo; Ctrl-C stops it within 5 s at any moment."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from tests.support import free_port
from zhuanlan_cli import DEMO_STATE, DemoState, UserError, demo_state, ensure_port_free

ZHUANLAN = Path(sys.executable).parent / "zhuanlan"


def env() -> dict[str, str]:
    # The demo uses its own SQLite database; PYTHONUNBUFFERED lets a test read progress as it comes.
    out = {k: v for k, v in os.environ.items() if k not in {"ZHUANLAN_DATABASE_URL", "ZHUANLAN_CONFIG"}}
    return {**out, "PYTHONUNBUFFERED": "1"}


def demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ZHUANLAN), "demo", *args], capture_output=True, text=True, cwd=cwd, env=env(), timeout=300, check=False
    )


def counts(demo_dir: Path) -> dict[str, int]:
    with sqlite3.connect(demo_dir / "data" / "zhuanlan.db") as db:
        tables = ("articles", "appearances", "deliveries")
        got = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    return {**got, "eml": len(list((demo_dir / "outbox").glob("*.eml")))}


def test_a_second_demo_into_the_same_directory_adds_and_sends_nothing(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    sample_port = free_port()
    first = demo(
        tmp_path, "--once", "--dir", "demo", "--sample-port", str(sample_port), "--smtp-port", str(free_port())
    )
    assert first.returncode == 0, first.stderr[-3000:]
    before = counts(demo_dir)
    assert before["articles"] > 10 and before["appearances"] > before["articles"] and before["eml"] > 0, before

    # Other free ports for what may change (mail, web); the directory keeps its sample sources' port.
    second = demo(tmp_path, "--once", "--dir", "demo", "--smtp-port", str(free_port()), "--web-port", str(free_port()))
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr == "" and "Traceback" not in second.stdout
    assert counts(demo_dir) == before
    assert "new stories     : 0" in second.stdout and "sent 0," in second.stdout, second.stdout
    assert f"127.0.0.1:{sample_port}" in second.stdout

    # It ends by saying how to run commands against the demo, and that command works from here.
    last = second.stdout.strip().splitlines()[-1]
    assert last.startswith("Commands against this demo: ") and "--config demo/zhuanlan.toml status" in last, last
    command = shlex.split(last.removeprefix("Commands against this demo: ").split(" (")[0])
    status = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env(), timeout=60, check=False)
    assert status.returncode == 0 and "最近一次采集：#2" in status.stdout, status.stdout + status.stderr

    # Another sample port for this directory would store every story again: refused, in plain words.
    other = free_port()
    moved = demo(tmp_path, "--once", "--dir", "demo", "--sample-port", str(other), "--smtp-port", str(free_port()))
    assert moved.returncode == 1 and "Traceback" not in moved.stderr
    assert f"serves its sample sources on port {sample_port}" in moved.stderr and "--dir" in moved.stderr
    assert counts(demo_dir) == before


def test_sample_port_zero_takes_a_free_port_that_the_directory_then_keeps(tmp_path: Path) -> None:
    today = date(2026, 12, 4)
    state, new = demo_state(tmp_path, 0, today)  # 0: whatever port is free, not the default 8750
    assert new and state.sample_port > 0 and state.anchor == today
    ensure_port_free(state.sample_port, "--sample-port")
    (tmp_path / DEMO_STATE).write_text(json.dumps({"sample_port": 9123, "anchor": "2026-12-01"}), encoding="utf-8")
    for requested in (None, 0, 9123):  # a kept demo: its own port, whatever 0 would pick
        assert demo_state(tmp_path, requested, today) == (DemoState(9123, date(2026, 12, 1)), False)
    with pytest.raises(UserError, match="serves its sample sources on port 9123"):
        demo_state(tmp_path, 9124, today)


def start_demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                str(ZHUANLAN),
                "demo",
                "--dir",
                "demo",
                "--sample-port",
                str(free_port()),
                "--smtp-port",
                str(free_port()),
                *args,
            ],
            cwd=tmp_path,
            env=env(),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group: Ctrl-C in a terminal signals the whole group
        )
    return proc, out, err


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def crawl_running(db: Path) -> bool:
    if not db.is_file():
        return False
    try:
        with sqlite3.connect(db, timeout=0.2) as conn:
            return conn.execute("SELECT count(*) FROM crawl_runs WHERE status = 'running'").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def interrupt(proc: subprocess.Popen[bytes]) -> float:
    """Ctrl-C as a terminal sends it (SIGINT to the process group); seconds until all of it is gone."""
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert wait_until(lambda: group_gone(proc.pid), 5), "a child of the demo outlived it"
    return time.monotonic() - started


def test_ctrl_c_during_the_first_cycle_stops_the_demo_at_once(tmp_path: Path) -> None:
    proc, out, err = start_demo(tmp_path, "--web-port", str(free_port()))
    try:
        assert wait_until(lambda: crawl_running(tmp_path / "demo" / "data" / "zhuanlan.db"), 120), err.read_text()
    finally:
        seconds = interrupt(proc)
    assert seconds < 5, f"the demo took {seconds:.1f} s to stop"
    stderr, stdout = err.read_text(encoding="utf-8"), out.read_text(encoding="utf-8")
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
    assert "zhuanlan demo: stopped by Ctrl-C" in stderr, stderr
    assert "Open http" not in stdout and "one full cycle done" not in stdout, stdout  # nothing more started


def home_page(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            return int(page.status)
    except OSError:
        return None


def test_a_web_port_taken_during_the_first_cycle_is_reported_not_announced(tmp_path: Path) -> None:
    web_port = free_port()
    proc, out, err = start_demo(tmp_path, "--web-port", str(web_port))
    try:
        # past the start's port checks: the sample sources are up and the first cycle runs
        assert wait_until(lambda: "sample sources on" in out.read_text(encoding="utf-8"), 60), err.read_text()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", web_port))
            taken.listen()
            proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stdout, stderr = out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")
    assert proc.returncode == 1, stdout + stderr
    assert f"cannot serve the web app on 127.0.0.1:{web_port}" in stderr and "--web-port" in stderr, stderr
    assert "Open http" not in stdout and "Traceback" not in stderr
    assert "one full cycle done" in stdout  # what the cycle stored and sent is kept


def test_ctrl_c_after_the_web_app_started_stops_the_demo(tmp_path: Path) -> None:
    web_port = free_port()
    proc, out, err = start_demo(tmp_path, "--web-port", str(web_port))
    try:
        assert wait_until(lambda: "Open http" in out.read_text(encoding="utf-8"), 180), err.read_text()
        assert wait_until(lambda: home_page(web_port) == 200, 30), err.read_text()
    finally:
        seconds = interrupt(proc)
    assert seconds < 5, f"the demo took {seconds:.1f} s to stop"
    stderr = err.read_text(encoding="utf-8")
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "zhuanlan demo: stopped." in stderr, stderr[-3000:]
    stdout = out.read_text(encoding="utf-8")
    assert "Commands against this demo (from another terminal): " in stdout and "status" in stdout, stdout
