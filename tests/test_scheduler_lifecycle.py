"""The scheduler as a process: `python scheduler.py CONFIG` against the sample sources on a free
loopback port, with crawls every few seconds. Jobs fire in order and feeds follow each crawl; a
SIGKILLed scheduler restarts, marks its dead run and loses or duplicates nothing; SIGTERM stops a
running crawl cleanly; an overrunning crawl is stopped and recorded; `zhuanlan status` reports it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

import scheduler
from crawler.samples.server import SampleSources
from pipeline.corpus import labels
from pipeline.corpus.models import Appearance, Article, CrawlRun, FeedState
from pipeline.corpus.search_index import indexed_count
from tests.support import free_port, wait_for
from zhuanlan_config import load_config

ROOT = Path(__file__).resolve().parent.parent
ALL_SOURCES = ("wechat-album", "jgdj-site", "kjj-site", "czj-site", "jyj-site", "wjw-site")


def child_env() -> dict[str, str]:
    env = {**os.environ}
    env.pop("ZHUANLAN_DATABASE_URL", None)  # the config file names the test database
    env.pop("ZHUANLAN_CONFIG", None)
    return env


def write_config(
    path: Path,
    db_url: str,
    samples: SampleSources,
    *,
    sources: tuple[str, ...],
    wechat_delay: float = 0,
    subprocess_timeout: int = 600,
) -> Path:
    """The samples' config with only `sources` enabled, a WeChat delay and a crawl time limit."""
    text = samples.config_toml(
        smtp_port=free_port(),
        web_port=free_port(),
        data_dir=str(path.parent / "data"),
        public_dir=str(path.parent / "public"),
    )

    def replace(old: str, new: str) -> None:
        nonlocal text
        assert text.count(old) == 1, old
        text = text.replace(old, new)

    for key in ALL_SOURCES:
        if key not in sources:
            replace(f'key = "{key}"\n', f'key = "{key}"\nenabled = false\n')
    replace("{ delay_seconds = 0,", f"{{ delay_seconds = {wechat_delay},")
    replace("subprocess_timeout_seconds = 600", f"subprocess_timeout_seconds = {subprocess_timeout}")
    path.write_text(f"database_url = {json.dumps(db_url)}\n{text}", encoding="utf-8")
    return path


class Schedulers:
    """Starts `python scheduler.py` processes; kills whatever is left at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cfg: Path, interval: int) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"scheduler-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scheduler.py"), str(cfg), "--crawl-interval-seconds", str(interval)],
            cwd=ROOT,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, index: int = -1) -> str:
        n = index if index >= 0 else len(self.procs) + index
        return (self.tmp_path / f"scheduler-{n}.log").read_text(encoding="utf-8", errors="replace")

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 40) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def schedulers(tmp_path: Path) -> Iterator[Schedulers]:
    s = Schedulers(tmp_path)
    yield s
    s.cleanup()


def runs(sessions: sessionmaker[Session]) -> list[CrawlRun]:
    with sessions() as s:
        return list(s.scalars(select(CrawlRun).order_by(CrawlRun.id)))


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def expected(samples: SampleSources, sources: tuple[str, ...]) -> tuple[int, set[str]]:
    """Stories and appearance keys an uninterrupted crawl of `sources` stores (from the ground truth)."""
    truth = samples.truth()
    keys: set[str] = set()
    stories = 0
    for story in truth.stories:
        fetched = {a.canonical_key for a in story.appearances if a.source_key in sources and a.passes_column_rules}
        stories += bool(fetched)
        keys |= fetched
    return stories, keys


def assert_consistent(sessions: sessionmaker[Session]) -> None:
    """No half-written state: every article has an appearance and a search-index row."""
    with sessions() as s:
        articles = int(s.scalar(select(func.count()).select_from(Article)) or 0)
        with_appearance = s.scalar(select(func.count(func.distinct(Appearance.article_id))))
        assert with_appearance == articles
        assert indexed_count(s) == articles


def zhuanlan(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zhuanlan_cli", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=120,
        check=False,
    )


def test_crawls_fire_in_order_feeds_follow_each_and_sigterm_exits_clean(
    tmp_path: Path,
    db_url: str,
    sessions: sessionmaker[Session],
    engine: Engine,
    samples: SampleSources,
    schedulers: Schedulers,
) -> None:
    sources = ("wjw-site",)
    cfg = write_config(tmp_path / "zhuanlan.toml", db_url, samples, sources=sources)
    samples.set_hidden("wjw-3")  # appears only after the first crawl
    proc = schedulers.start(cfg, interval=3)
    feed = tmp_path / "public" / "feeds" / "all.json"

    def feed_titles() -> set[str]:
        try:
            return {str(item["title"]) for item in json.loads(feed.read_text(encoding="utf-8"))["items"]}
        except (OSError, ValueError):
            return set()

    first = wait_for("the first crawl", lambda: [r for r in runs(sessions) if r.finished_at], 60, proc)[0]
    assert first.status == "ok" and first.trigger == "schedule", first.summary
    stories, _ = expected(samples, sources)
    assert first.summary["new_stories"] == stories
    wait_for("the feeds after the first crawl", lambda: len(feed_titles()) == stories, 20, proc)
    samples.set_hidden("wjw-3", False)
    new_title = samples.truth().story("wjw-3").title
    assert new_title not in feed_titles()

    done = wait_for("a second crawl", lambda: [r for r in runs(sessions) if r.finished_at][1:], 60, proc)
    second = done[0]
    assert second.status == "ok" and second.summary["new_stories"] == 1, second.summary
    # in order, never overlapping (max_instances=1), one interval apart at least
    assert first.finished_at is not None and second.started_at >= first.finished_at
    wait_for("the feeds after the second crawl", lambda: new_title in feed_titles(), 20, proc)
    with sessions() as s:
        state = s.scalars(select(FeedState).where(FeedState.key == "all")).one()
        assert second.finished_at is not None and state.built_at >= second.finished_at
        assert state.item_count == stories + 1

    # `zhuanlan status` while it runs: alive, with each job's next run
    alive = zhuanlan(cfg, "status")
    assert alive.returncode == 0 and alive.stdout.startswith("调度器运行中（最近心跳"), alive.stdout + alive.stderr
    for job in scheduler.JOB_IDS:
        assert any(line.split()[:1] == [job] for line in alive.stdout.splitlines()), alive.stdout

    assert schedulers.stop(proc) == 0, schedulers.log()
    assert all(r.status != "running" for r in runs(sessions))
    assert "scheduler stopped" in schedulers.log()
    config = load_config(cfg)
    lock = scheduler.SchedulerLock(config, engine)  # released: another scheduler may start
    lock.acquire()
    lock.release()

    # `zhuanlan status` once it stopped: not running (no next runs), the last result, source health
    status = zhuanlan(cfg, "status")
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert out.startswith("调度器未运行（最近心跳") and "下次运行：" not in out, out
    for job in scheduler.JOB_IDS:
        assert not any(line.split()[:1] == [job] for line in out.splitlines()), out
    last = max(runs(sessions), key=lambda r: r.id)  # ok, or a later crawl the shutdown stopped
    assert f"最近一次采集：#{last.id} 定时 · {labels.run_status(last.status)}" in out, out
    table = out.split("采集源：", 1)[1].split("单位未识别的文章：", 1)[0]
    health = {line.split()[0]: line.split(" | ") for line in table.splitlines()[2:] if line.strip()}
    assert "专栏候选待确认：" in out, out
    assert set(health) == set(ALL_SOURCES), out
    assert health["wjw-site"][2] == "正常" and health["wjw-site"][3] != "从未", out
    assert health["kjj-site"][0].strip() == "kjj-site （已停用）", out


def test_sigkill_during_a_crawl_then_restart_loses_and_duplicates_nothing(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], samples: SampleSources, schedulers: Schedulers
) -> None:
    sources = ("wechat-album", "jgdj-site")  # jgdj reposts WeChat stories: merges across the kill
    cfg = tmp_path / "zhuanlan.toml"
    write_config(cfg, db_url, samples, sources=sources, wechat_delay=0.3)
    proc = schedulers.start(cfg, interval=1)
    wait_for(
        "a crawl that stored something",
        lambda: any(r.status == "running" for r in runs(sessions)) and count(sessions, Article) > 0,
        60,
        proc,
    )
    crawlers = children_of(proc.pid)
    assert crawlers, "no crawl subprocess"
    proc.kill()
    proc.wait()
    wait_for("the crawl subprocess to die with the scheduler", lambda: not any(alive(p) for p in crawlers), 10)
    [killed] = [r for r in runs(sessions) if r.status == "running"]
    stories, keys = expected(samples, sources)
    assert count(sessions, Article) < stories  # really interrupted
    assert_consistent(sessions)

    write_config(cfg, db_url, samples, sources=sources)  # no delay now: the restart finishes fast
    again = schedulers.start(cfg, interval=2)  # the dead scheduler's lock is gone: no refusal
    after = wait_for(
        "a crawl after the restart",
        lambda: [r for r in runs(sessions) if r.id > killed.id and r.finished_at],
        60,
        again,
    )
    assert after[0].status == "ok", after[0].summary
    assert schedulers.stop(again) == 0, schedulers.log()
    assert "refusing" not in schedulers.log()

    with sessions() as s:
        run = s.get(CrawlRun, killed.id)
        assert run is not None and run.status == "killed"
        assert run.summary["reason"] == scheduler.STALE_RUN_REASON
        stored_keys = list(s.scalars(select(Appearance.canonical_key)))
    assert len(stored_keys) == len(set(stored_keys)) == len(keys)
    assert set(stored_keys) == keys
    assert count(sessions, Article) == stories
    assert all(r.status != "running" for r in runs(sessions))
    assert_consistent(sessions)


def test_sigterm_during_a_crawl_stops_it_cleanly(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], samples: SampleSources, schedulers: Schedulers
) -> None:
    cfg = write_config(tmp_path / "zhuanlan.toml", db_url, samples, sources=("wechat-album",), wechat_delay=0.5)
    proc = schedulers.start(cfg, interval=1)
    wait_for(
        "a crawl that stored something",
        lambda: any(r.status == "running" for r in runs(sessions)) and count(sessions, Article) > 0,
        60,
        proc,
    )
    crawlers = children_of(proc.pid)
    started = time.monotonic()
    assert schedulers.stop(proc, timeout=30) == 0, schedulers.log()
    assert time.monotonic() - started < 30
    assert not any(alive(p) for p in crawlers)
    all_runs = runs(sessions)
    assert all(r.status != "running" for r in all_runs)
    stopped = [r for r in all_runs if r.status == "killed"]
    assert stopped and stopped[-1].summary["reason"].startswith("stopped: the scheduler shut down"), [
        r.summary for r in all_runs
    ]
    assert 0 < count(sessions, Article) < expected(samples, ("wechat-album",))[0]
    assert_consistent(sessions)


def test_overrunning_crawl_is_stopped_and_reported(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], samples: SampleSources, schedulers: Schedulers
) -> None:
    cfg = write_config(
        tmp_path / "zhuanlan.toml", db_url, samples, sources=("wechat-album",), wechat_delay=2, subprocess_timeout=1
    )
    proc = schedulers.start(cfg, interval=2)
    wait_for("an overrun recorded", lambda: [r for r in runs(sessions) if r.status == "killed"], 60, proc)
    assert schedulers.stop(proc) == 0, schedulers.log()
    all_runs = runs(sessions)
    assert all(r.status != "running" for r in all_runs)
    first = all_runs[0]
    assert first.status == "killed" and first.trigger == "schedule" and first.finished_at is not None
    assert "overran its 1 s limit" in first.summary["reason"]
    assert "overran" in schedulers.log()
    assert_consistent(sessions)
    status = zhuanlan(cfg, "status")
    assert status.returncode == 0, status.stderr
    if len(all_runs) == 1:
        assert f"最近一次采集：#{first.id} 定时 · 已中止" in status.stdout, status.stdout
        assert "原因：超过 1 秒的时间上限（crawl.subprocess_timeout_seconds），已被停止" in status.stdout, status.stdout
    else:  # a second crawl had started: the shutdown stopped it
        assert "原因：已停止：本次采集期间调度器关闭" in status.stdout, status.stdout
    assert status.stdout.startswith("调度器未运行") and "下次运行：" not in status.stdout, status.stdout


def thread_ids(pid: int) -> list[int]:
    return sorted(int(task.name) for task in Path(f"/proc/{pid}/task").iterdir())


def signal_thread(pid: int, tid: int, signum: int) -> None:
    """What the kernel may do with a Ctrl-C or a `kill`: hand the signal to one thread of the process."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill {pid} {tid}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_taken_by_another_thread_still_stops_the_scheduler(
    tmp_path: Path,
    db_url: str,
    sessions: sessionmaker[Session],  # the schema
    samples: SampleSources,
    schedulers: Schedulers,
    signum: int,
) -> None:
    # The main thread only waits; the heartbeat, APScheduler and the executor have threads of their
    # own, and a process-directed signal may land on any of them. The scheduler must stop anyway.
    cfg = write_config(tmp_path / "zhuanlan.toml", db_url, samples, sources=("wjw-site",))
    proc = schedulers.start(cfg, interval=3600)
    wait_for("the scheduler running", lambda: "scheduler running" in schedulers.log(), 60, proc)
    others = wait_for("the scheduler's threads", lambda: [t for t in thread_ids(proc.pid) if t != proc.pid], 10, proc)
    signal_thread(proc.pid, others[-1], signum)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running 10 s after signal {signum} went to thread {others[-1]}") from None
    assert code == 0, schedulers.log()
    assert "scheduler stopped" in schedulers.log()
