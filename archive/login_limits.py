"""Where the login's rate-limit counts live (flask-limiter; the limits are `archive.views.operator`'s).

With `[distributed] redis_url` every web app counts in that Redis, under the installation's key
prefix, so k web apps behind nginx allow each rate once between them; counted in each process's
memory, k processes would allow it k times. Without a Redis URL each process counts alone, as one
web app needs no more.

Must never refuse or hold up a login because Redis does not answer: flask-limiter then counts in
this process's memory (its in-memory fallback keeps the same limits) until Redis answers again, and
`FallbackWatch` says so once in the log. The lockout (`archive.auth`) is in the database, not here.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from flask import Response
    from flask_limiter import Limiter

    from zhuanlan_config import DistributedConf

log = logging.getLogger("zhuanlan.web.auth")

# Redis on the internal network answers in milliseconds; one that does not answer must not hold a
# login up longer than this (flask-limiter retries it now and then while it counts in memory).
REDIS_TIMEOUT_SECONDS = 1


def shown_url(url: str) -> str:
    """`url` fit for a log line: its password (in the user part or as `?password=`) as ***."""
    parts = urlsplit(url)
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        url = url.replace(parts.netloc, f"{user.partition(':')[0]}:***@{host}", 1)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def storage_options(dist: DistributedConf) -> dict[str, Any]:
    """The `flask_limiter.Limiter` arguments that say where this installation's counts live."""
    if not dist.redis_url:
        return {"storage_uri": "memory://"}
    url = dist.redis_url
    if url.startswith("unix://"):
        url = "redis+unix://" + url.removeprefix("unix://")  # the `limits` library's name for a socket
    return {
        "storage_uri": url,
        "storage_options": {
            # limits' RedisStorage puts this before each key (default "LIMITS"): the installation's keys
            "key_prefix": f"{dist.key_prefix}:login-limits",
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
        },
        "in_memory_fallback_enabled": True,
    }


def redis_problem(url: str) -> str | None:
    """Why the Redis at `url` does not answer a PING within `REDIS_TIMEOUT_SECONDS`, or None if it does:
    `zhuanlan serve` asks at its start, so an operator learns it then, not at the first login."""
    import redis

    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


class FallbackWatch:
    """An after-request hook that logs when `limiter` moves its counts from Redis into this
    process's memory (Redis did not answer), and when they are back in Redis: once each time,
    not at every request. flask-limiter's own warning does not say which Redis."""

    def __init__(self, limiter: Limiter, redis_url: str) -> None:
        self.limiter = limiter
        self.shown = shown_url(redis_url)
        self.shared = True
        self._lock = threading.Lock()  # waitress' threads: one of them logs the change

    def __call__(self, response: Response) -> Response:
        if not (self.limiter.enabled and self.limiter.initialized):
            return response
        # While Redis is down, flask-limiter's strategy is its fallback, which counts in memory.
        shared = self.limiter.limiter.storage is self.limiter.storage
        with self._lock:
            changed, self.shared = shared != self.shared, shared
        if changed and not shared:
            log.warning(
                "login rate limits: Redis at %s does not answer; until it does, this web process counts "
                "login attempts on its own (each web app allows the full rate)",
                self.shown,
            )
        elif changed:
            log.warning("login rate limits: Redis at %s answers again; the counts are shared again", self.shown)
        return response
