"""Distributed crawl: the scheduler's side (enqueue a run's due sources) and the crawl worker's loop.

Names: a *crawl worker* is a `zhuanlan worker` process (any number, on any machine) that takes
sources from the Redis queue (`crawler.queue`) and crawls each with the very command a single
machine runs, `zhuanlan crawl --source KEY --run-id N`, as a child process (the Twisted reactor
runs once per process). That crawl has, as always, its own *pipeline worker* subprocess
(`pipeline.worker`), the ingest that stores into the shared database.

The crawl's requests wait in Redis through scrapy-redis (`crawler.redis_scheduler`), one frontier
per source job. While its child crawls, the crawl worker renews its lease on the source; if it
dies, its lease ends and another worker takes the source over, records the handover on the dead
worker's source run (`runs.record_handover`, with how many requests it resumes from the dead
crawl's frontier) and crawls the source again: the child fetches the requests left queued in
Redis and re-reads the source's lists for those the dead crawl had popped but not stored (the
run was not complete, so the whole list is paged; what was stored is known and skipped). The
worker that finishes a run's last source judges the run (`runs.finish_crawl_run`); `done`
deletes a source's frontier with its job.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from crawler.frontier import frontiers_by_run, resumes
from crawler.queue import Claim, Job, SourceQueue
from pipeline.corpus.config_sync import sync_config
from pipeline.corpus.db import transaction
from pipeline.corpus.runs import (
    ended_runs,
    finish_crawl_run,
    mark_killed_runs,
    plan_crawl,
    record_handover,
    record_worker,
    start_distributed_run,
)
from pipeline.signals import sleep_until

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config, SourceConf

log = logging.getLogger(__name__)

Spawn = Callable[[list[str]], "subprocess.Popen[bytes]"]
Stop = Callable[["subprocess.Popen[bytes]"], None]


def sweep_frontiers(sessions: sessionmaker[Session], client: Any, prefix: str) -> int:
    """Delete the request frontiers that ended crawl runs left in Redis; returns how many keys.

    A crawl deletes its frontier when its spider closes, and a crawl worker with the source's job;
    a crawl killed outright (SIGKILL, a lost machine) deletes nothing. Once its run is marked ended
    (`mark_killed_runs`) its frontier has no further use. Frontiers of running runs stay (a dead
    worker's job is resumed from one), and so do those of runs this database does not know (another
    installation's, on a shared Redis and prefix). A Redis error is logged, never raised: the
    sweep must not stop a crawl."""
    try:
        found = frontiers_by_run(client, prefix)
        if not found:
            return 0
        with sessions() as session:
            ended = ended_runs(session, found)
        keys = [key for run in sorted(ended) for key in found[run]]
        if keys:
            client.delete(*keys)
            log.warning("deleted %d frontier key(s) left in Redis by ended crawl runs %s", len(keys), sorted(ended))
        return len(keys)
    except RedisError as exc:
        log.warning("could not sweep the frontiers left in Redis: %s", exc)
        return 0


def enqueue_crawl(
    sessions: sessionmaker[Session],
    queue: SourceQueue,
    config: Config,
    sources: Sequence[SourceConf],
    *,
    trigger: str,
    now: datetime,
    backfill: bool = False,
    force: bool = False,
) -> tuple[int, list[Job], tuple[str, ...]]:
    """Start a distributed crawl run and queue its due sources (`plan_crawl` decides which);
    returns the run id, the jobs queued and the sources skipped (why). A run with nothing due is
    judged at once."""
    with transaction(sessions) as session:
        sync_config(session, config, now)
        mark_killed_runs(session, now, started_before=now - timedelta(seconds=config.crawl.subprocess_timeout_seconds))
        run_id = start_distributed_run(session, trigger, now, f"redis queue {queue.prefix}")
        plan = plan_crawl(
            session,
            sources,
            trigger=trigger,
            now=now,
            tz=config.tz,
            stale_after=timedelta(seconds=config.crawl.subprocess_timeout_seconds),
            backfill=backfill,
            force=force,
            run_id=run_id,
        )
    sweep_frontiers(sessions, queue.client, queue.prefix)  # after the killed runs were marked
    jobs = [Job(run_id, p.source.key, trigger, backfill) for p in plan.sources]
    queue.enqueue(jobs)
    if not jobs:
        with transaction(sessions) as session:
            finish_crawl_run(session, run_id, datetime.now(UTC), config.tz)
    return run_id, jobs, plan.skipped


class CrawlWorker:
    """One `zhuanlan worker`: claims sources, crawls each in a child process, renews its lease."""

    def __init__(
        self,
        *,
        name: str,
        queue: SourceQueue,
        sessions: sessionmaker[Session],
        config: Config,
        config_path: str,
        spawn: Spawn,
        stop_child: Stop,
        poll_seconds: float = 1.0,
        sources_per_crawl: int = 4,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.queue = queue
        self.sessions = sessions
        self.config = config
        self.config_path = config_path
        self.spawn = spawn
        self.stop_child = stop_child
        self.poll_seconds = poll_seconds
        # Sources crawled by one child process: a crawl process costs seconds to start (Scrapy, the
        # pipeline worker, the tagger's dictionaries), and one crawl runs many spiders at once.
        self.sources_per_crawl = sources_per_crawl
        self.clock = clock
        self.crawled = 0

    def run(self, stop: threading.Event, *, exit_when_idle: bool = False) -> int:
        """Work until `stop` is set (or, with `exit_when_idle`, until no source is queued or held)."""
        while not stop.is_set():
            reaped = self.queue.reap()
            if reaped:
                log.warning("%d source(s) whose worker stopped renewing its lease went back to the queue", reaped)
            claims = self._claim_some()
            if not claims:
                if exit_when_idle and self.queue.idle():
                    break
                sleep_until(stop, self.poll_seconds)  # the main thread: never stop.wait() (pipeline.signals)
                continue
            groups: dict[tuple[int, str, bool], list[Claim]] = {}
            for claim in claims:
                groups.setdefault((claim.job.run_id, claim.job.trigger, claim.job.backfill), []).append(claim)
            for group in groups.values():
                self.work(group, stop)
        return self.crawled

    def _claim_some(self) -> list[Claim]:
        claims: list[Claim] = []
        while len(claims) < self.sources_per_crawl and (claim := self.queue.claim(self.name)) is not None:
            claims.append(claim)
        return claims

    def _take_over(self, claim: Claim) -> None:
        if claim.previous_worker is None or claim.lease_ended_ms is None:
            return
        job = claim.job
        # The dead crawl's frontier, resumed by this worker's child (a WeChat album starts over).
        kind = next((s.kind for s in self.config.sources if s.key == job.source_key), "")
        resumed = self.queue.frontier_size(job) if resumes(kind) else 0
        with transaction(self.sessions) as session:
            record_handover(
                session,
                job.run_id,
                job.source_key,
                previous=claim.previous_worker,
                lease_ended=datetime.fromtimestamp(claim.lease_ended_ms / 1000, UTC),
                taken_by=self.name,
                now=self.clock(),
                resumed_requests=resumed,
            )
        log.warning(
            "took over %s (run %d) from %s, resuming %d queued request(s)",
            job.source_key,
            job.run_id,
            claim.previous_worker,
            resumed,
        )

    def work(self, claims: list[Claim], stop: threading.Event) -> None:
        """Crawl the claimed sources (one run, one trigger) in one child: `zhuanlan crawl --run-id`."""
        for claim in claims:
            self._take_over(claim)
        job = claims[0].job
        cmd = [sys.executable, "-m", "zhuanlan_cli", "--config", self.config_path, "crawl"]
        for claim in claims:
            cmd += ["--source", claim.job.source_key]
        cmd += ["--run-id", str(job.run_id), "--trigger", job.trigger]
        if job.backfill:
            cmd.append("--backfill")
        child = self.spawn(cmd)
        if not self._supervise(claims, child, stop):
            return  # a lease is gone: another worker has those sources now
        for claim in claims:
            self.crawled += 1
            with transaction(self.sessions) as session:
                record_worker(session, claim.job.run_id, claim.job.source_key, self.name)
            if self.queue.done(claim) == 0:
                with transaction(self.sessions) as session:
                    summary = finish_crawl_run(session, claim.job.run_id, self.clock(), self.config.tz)
                log.info("crawl run %d finished: %s", claim.job.run_id, summary.get("status"))

    def _supervise(self, claims: list[Claim], child: subprocess.Popen[bytes], stop: threading.Event) -> bool:
        """Renew the leases while the child crawls (every third of the lease); False when one was lost."""
        interval = self.queue.lease_ms / 3000
        deadline = self.clock() + timedelta(seconds=self.config.crawl.subprocess_timeout_seconds)
        while True:
            try:
                child.wait(timeout=interval)
                return True
            except subprocess.TimeoutExpired:
                pass
            keys = ", ".join(c.job.source_key for c in claims)
            if stop.is_set():
                # Shutting down: the leases run out and other workers take the sources over.
                log.warning("shutting down: stopping the crawl of %s", keys)
                self.stop_child(child)
                return False
            if self.clock() > deadline:
                log.error("the crawl of %s overran crawl.subprocess_timeout_seconds: stopped", keys)
                self.stop_child(child)
                return True
            renewed = [self.queue.renew(claim) for claim in claims]  # every one, even after a loss
            if not all(renewed):
                log.error("lost a lease among %s: stopping their crawl", keys)
                self.stop_child(child)
                return False
