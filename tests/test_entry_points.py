"""What ships, run as a user runs it: the installed `zhuanlan` console script, `zhuanlan serve`
under waitress (pages answer; SIGTERM and Ctrl-C stop it cleanly) and a whole `zhuanlan demo --once`
on free ports. (The other commands run through the same console script in test_cli.py,
test_archive_cli.py, test_end_to_end.py and test_corrections_e2e.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import urllib.error
import urllib.request
from importlib import metadata
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Appearance, Article, Delivery, FeedState, Source
from tests.support import ZHUANLAN, free_port, run_zhuanlan, serving
from tests.test_archive_corpus import build_corpus

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from sqlalchemy.orm import Session, sessionmaker


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ZHUANLAN_DATABASE_URL"}
    return {**env, **extra}


def test_the_console_script_is_the_cli_entry() -> None:
    (script,) = [e for e in metadata.entry_points(group="console_scripts") if e.name == "zhuanlan"]
    assert script.value == "zhuanlan_cli:entry"
    assert ZHUANLAN.exists() and os.access(ZHUANLAN, os.X_OK)
    shown = run_zhuanlan("--help", timeout=60)
    assert shown.returncode == 0 and shown.stdout.startswith("usage: zhuanlan ")
    for command in ("search", "export", "serve", "demo", "crawl", "digest"):
        assert command in shown.stdout
    wrong = run_zhuanlan("no-such-command", timeout=60)
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


def _get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode("utf-8")


@pytest.fixture
def corpus_config(tmp_path: Path, db_url: str, sessions: sessionmaker[Session], now: datetime) -> Path:
    """A config whose database holds the invented corpus."""
    with sessions() as db, db.begin():
        build_corpus(db, now)
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(f'database_url = {json.dumps(db_url)}\ndata_dir = "data"\n', encoding="utf-8")
    return cfg


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_runs_waitress_answers_and_stops_cleanly_on_a_signal(corpus_config: Path, stop: signal.Signals) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(corpus_config, port, _env()) as proc:
        status, headers, body = _get(f"{base}/")
        assert status == 200 and headers["Server"] == "waitress"
        assert "以全会精神为指引 推动教育事业高质量发展" in body
        status, _, body = _get(f"{base}/search?q=%E5%85%9A%E5%BB%BA")  # 党建
        assert status == 200 and "共找到 2 篇" in body and "<mark>党建</mark>" in body
        status, _, body = _get(f"{base}/story/guid-edu")
        assert status == 200 and "深化思政课程改革" in body
        status, headers, _ = _get(f"{base}/search/export?q=%E5%85%9A%E5%BB%BA&format=jsonl")
        assert status == 200 and "attachment" in headers["Content-Disposition"]
        assert _get(f"{base}/no-such-page")[0] == 404

        proc.send_signal(stop)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"serving on http://127.0.0.1:{port}/" in out and "stopped" in out
    assert "Traceback" not in err
    with socket.socket() as probe:  # nothing listens there any more
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_demo_once_runs_the_whole_pipeline_on_free_ports(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    ports = [str(free_port()) for _ in range(3)]
    proc = run_zhuanlan(
        *("demo", "--once", "--dir", str(demo)),
        *("--sample-port", ports[0], "--smtp-port", ports[1], "--web-port", ports[2]),
        cwd=tmp_path,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== zhuanlan demo: one full cycle done" in proc.stdout
    summary = dict(
        (name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in proc.stdout.splitlines())
    )
    sources, ok = summary["sources crawled"].split(" (")
    assert int(sources) > 0 and ok == f"{sources} ok)"
    assert int(summary["new stories"]) > 0 and summary["problems"] == "0"

    engine = make_engine(f"sqlite:///{demo / 'data' / 'zhuanlan.db'}")
    try:
        with session_factory(engine)() as db:
            stories = db.scalar(select(func.count(Article.id))) or 0
            assert stories == int(summary["new stories"])
            assert (db.scalar(select(func.count(Appearance.id))) or 0) > stories  # reposts attached, not new stories
            assert db.scalar(select(func.count(Source.id))) == int(sources)
            assert (db.scalar(select(func.count(FeedState.id))) or 0) > 0
            sent = db.scalar(select(func.count(Delivery.id)).where(Delivery.status == "sent")) or 0
    finally:
        engine.dispose()
    digest = re.search(r"digest \d{4}-W\d\d: sent (\d+), already sent 0, failed 0", proc.stdout)
    assert digest is not None, proc.stdout
    mails = sorted((demo / "outbox").glob("*.eml"))
    # Every copy sent is a message in the outbox: one per recipient delivery, plus the operator's.
    assert len(mails) == int(digest.group(1)) and 0 < sent <= len(mails)
    assert any((demo / "public" / "feeds").rglob("*.atom"))
