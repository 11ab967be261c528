"""The Redis source queue of the distributed crawl (issue 20, point 1), on a real Redis: a source is
held by one worker at a time, a lease that is not renewed returns the source to the queue with the
name of the worker that lost it, and a worker that lost its lease can neither renew nor finish."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from crawler.frontier import FrontierKeys, frontier_keys
from crawler.queue import Job, SourceQueue
from tests.servers import redis_prefix


@pytest.fixture
def queue() -> Iterator[SourceQueue]:
    with redis_prefix() as (url, prefix):
        client = redis.Redis.from_url(url, decode_responses=True)
        yield SourceQueue(client, prefix, lease_seconds=1)
        client.close()


def test_each_source_goes_to_one_worker_and_the_last_done_says_so(queue: SourceQueue) -> None:
    queue.enqueue([Job(7, "a", "schedule"), Job(7, "b", "schedule")])
    first, second = queue.claim("w1"), queue.claim("w2")
    assert first is not None and second is not None
    assert {first.job.source_key, second.job.source_key} == {"a", "b"}
    assert queue.claim("w3") is None and not queue.idle()
    assert queue.done(first) == 1
    assert queue.done(second) == 0  # the run's last source: its worker judges the run
    assert queue.idle()


def test_an_expired_lease_hands_the_source_over(queue: SourceQueue) -> None:
    queue.enqueue([Job(8, "a", "schedule")])
    lost = queue.claim("victim")
    assert lost is not None and lost.previous_worker is None
    assert queue.reap() == 0  # the lease is still running
    time.sleep(1.2)
    assert queue.reap() == 1
    taken = queue.claim("survivor")
    assert taken is not None and taken.job == lost.job
    assert taken.previous_worker == "victim" and taken.lease_ended_ms is not None
    assert not queue.renew(lost) and queue.done(lost) is None  # the victim came back too late
    assert queue.renew(taken)
    assert queue.done(taken) == 0 and queue.idle()


def test_a_renewed_lease_is_kept(queue: SourceQueue) -> None:
    queue.enqueue([Job(9, "a", "schedule")])
    claim = queue.claim("w1")
    assert claim is not None
    for _ in range(4):
        time.sleep(0.4)
        assert queue.renew(claim)
        assert queue.reap() == 0
    assert queue.done(claim) == 0


def test_a_sources_frontier_is_counted_at_takeover_and_deleted_with_its_job(queue: SourceQueue) -> None:
    queue.enqueue([Job(9, "a", "schedule")])
    lost = queue.claim("victim")
    assert lost is not None
    keys = frontier_keys(queue.prefix, 9, "a")  # what scrapy-redis wrote for the victim's crawl
    queue.client.zadd(keys.requests, {"r1": 0, "r2": 0})
    queue.client.sadd(keys.seen, "f1", "f2", "f3")
    time.sleep(1.1)
    queue.reap()
    taken = queue.claim("heir")
    assert taken is not None
    assert queue.frontier_size(taken.job) == 2
    assert queue.done(lost) is None  # the victim finishes nothing, its frontier stays for the heir
    assert queue.client.exists(keys.requests, keys.seen) == 2
    assert queue.done(taken) == 0
    assert queue.client.exists(keys.requests, keys.seen) == 0


def test_frontier_keys_are_per_run_and_source_under_the_prefix() -> None:
    keys = frontier_keys("zh", 12, "site-col1")
    assert keys == FrontierKeys("zh:frontier:12:site-col1:requests", "zh:frontier:12:site-col1:seen")
    assert frontier_keys("zh", 13, "site-col1") != keys
    with pytest.raises(ValueError):
        frontier_keys("zh", 12, "50%")  # scrapy-redis would format it
