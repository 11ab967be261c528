"""The distributed source queue in Redis: the scheduler enqueues due sources, crawl workers claim them
under a lease (issue 20).

The unit of work is one source of one crawl run (a `Job`). Keys, under the configured prefix:

- `<p>:queue`   a list of job ids waiting for a worker (claimed from its right end),
- `<p>:jobs`    job id → the job as JSON,
- `<p>:leases`  a sorted set: job id → when its lease ends (Redis server clock, milliseconds),
- `<p>:holder`  job id → the worker holding it,
- `<p>:handover` job id → "<worker>|<ms>": the worker whose lease expired on it, and when,
- `<p>:left:<run id>` how many jobs of the run are not done,
- `<p>:frontier:<run id>:<source>:…` the job's request frontier, scrapy-redis' queue and seen-set
  (`crawler.frontier`): written by the crawl, deleted here when the job is done.

The queue holds *sources*; the requests of a source are scrapy-redis'. scrapy-redis has no
visibility timeout (it pops a request when it hands it out, and nothing brings it back if the
process dies), so the lease is kept one level up: a job whose worker dies is taken over whole,
and the new holder's crawl resumes the job's frontier (what was popped and lost is found again
by re-reading the source's lists, see `crawler.frontier`).

Visibility timeout: a claimed job stays in `jobs` and gets a lease that its live worker renews
(`renew`, every third of the lease). A worker that dies stops renewing; `reap` (run by every
worker between claims) puts jobs whose lease ended back at the head of the queue, noting in
`handover` whose lease ended, so the worker that takes it over can record the handover.
Each step is one Lua script, so Redis runs it atomically: a job is never held by two workers at
once, nor lost between the queue and the leases. `done` and `renew` succeed only for the holder:
a worker that was presumed dead (paused past its lease) and comes back learns it lost the job.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from crawler.frontier import frontier_keys

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

_CLAIM = (
    _NOW
    + """
local id = redis.call('RPOP', KEYS[1])
if not id then return false end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
redis.call('HSET', KEYS[3], id, ARGV[1])
local handover = redis.call('HGET', KEYS[4], id)
redis.call('HDEL', KEYS[4], id)
return {id, redis.call('HGET', KEYS[5], id), handover or ''}
"""
)

_RENEW = (
    _NOW
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

_DONE = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[5], KEYS[6])
local left = redis.call('DECR', KEYS[4])
if left <= 0 then redis.call('DEL', KEYS[4]) end
return left
"""

_REAP = (
    _NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(expired) do
  local holder = redis.call('HGET', KEYS[2], id) or '?'
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HSET', KEYS[4], id, holder .. '|' .. now)
  redis.call('RPUSH', KEYS[3], id)
end
return #expired
"""
)


@dataclass(frozen=True)
class Job:
    """One source of one crawl run, as the scheduler planned it."""

    run_id: int
    source_key: str
    trigger: str
    backfill: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Claim:
    """A job held by this worker, and the worker whose lease on it expired before (if any)."""

    job: Job
    worker: str
    previous_worker: str | None = None
    lease_ended_ms: int | None = None


class SourceQueue:
    """The queue of one installation (one key prefix) on one Redis."""

    def __init__(self, client: Any, prefix: str, lease_seconds: float) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_ms = round(lease_seconds * 1000)
        self.keys = {name: f"{prefix}:{name}" for name in ("queue", "jobs", "leases", "holder", "handover")}
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._done = client.register_script(_DONE)
        self._reap = client.register_script(_REAP)

    @classmethod
    def connect(cls, url: str, prefix: str, lease_seconds: float) -> SourceQueue:
        import redis

        return cls(redis.Redis.from_url(url, decode_responses=True), prefix, lease_seconds)

    def _left(self, run_id: int) -> str:
        return f"{self.prefix}:left:{run_id}"

    def enqueue(self, jobs: list[Job]) -> None:
        """Queue a run's jobs (all at once: the run's count of jobs left is set with them)."""
        if not jobs:
            return
        k = self.keys
        with self.client.pipeline(transaction=True) as pipe:
            for job in jobs:
                pipe.hset(k["jobs"], job.id, json.dumps(asdict(job)))
                pipe.lpush(k["queue"], job.id)
                pipe.incr(self._left(job.run_id))
            pipe.execute()

    def claim(self, worker: str) -> Claim | None:
        """The next job, now held by `worker` under a lease; None when the queue is empty."""
        k = self.keys
        got = self._claim(
            keys=[k["queue"], k["leases"], k["holder"], k["handover"], k["jobs"]], args=[worker, self.lease_ms]
        )
        if not got:
            return None
        _id, data, handover = got
        job = Job(**json.loads(data))
        if not handover:
            return Claim(job, worker)
        previous, _, ended = str(handover).rpartition("|")
        return Claim(job, worker, previous, int(ended))

    def renew(self, claim: Claim) -> bool:
        """Extend the lease; False when this worker no longer holds the job (its lease ended)."""
        k = self.keys
        return bool(self._renew(keys=[k["leases"], k["holder"]], args=[claim.job.id, claim.worker, self.lease_ms]))

    def frontier_size(self, job: Job) -> int:
        """How many requests of the job wait in its frontier (left by the crawl of a dead holder)."""
        return int(self.client.zcard(frontier_keys(self.prefix, job.run_id, job.source_key).requests))

    def done(self, claim: Claim) -> int | None:
        """The job is finished (its frontier is deleted with it): how many jobs of its run are
        left; None when it was taken over."""
        k = self.keys
        frontier = frontier_keys(self.prefix, claim.job.run_id, claim.job.source_key)
        left = int(
            self._done(
                keys=[
                    k["leases"],
                    k["holder"],
                    k["jobs"],
                    self._left(claim.job.run_id),
                    frontier.requests,
                    frontier.seen,
                ],
                args=[claim.job.id, claim.worker],
            )
        )
        return None if left < 0 else left

    def reap(self) -> int:
        """Jobs whose lease ended go back to the head of the queue; returns how many."""
        k = self.keys
        return int(self._reap(keys=[k["leases"], k["holder"], k["queue"], k["handover"]]))

    def idle(self) -> bool:
        """No job waiting and none held."""
        k = self.keys
        return int(self.client.llen(k["queue"])) == 0 and int(self.client.zcard(k["leases"])) == 0
