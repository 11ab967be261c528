"""The messages between a crawl process and its pipeline worker: frozen dataclasses over one pipe.

Crawl process → worker, in order: `Open` a source, `Pages` (many at once), `Close` a source, `Stop`.
Worker → crawl process: `Ready` or `StartFailed` once; `Opened` and `Closed` answering each source;
`Settled` each time it has committed (or lost, and recorded as lost) more pages, with the seconds
it spent waiting for input since the last one (what `split.WorkSplit` moves work by).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.record import Prepared, SourceRef


@dataclass(frozen=True)
class Open:
    sid: int  # the crawl process's number for this source in this crawl
    source: SourceRef


@dataclass(frozen=True)
class Pages:
    pages: tuple[tuple[int, Prepared], ...]  # (sid, page) in the order the spiders yielded them


@dataclass(frozen=True)
class Close:
    sid: int
    requests: int  # the spider's request count, for the source's run


@dataclass(frozen=True)
class Stop:
    """Store what was sent, then exit."""


ToWorker = Open | Pages | Close | Stop


@dataclass(frozen=True)
class Ready:
    """The worker imported its modules and opened the database."""


@dataclass(frozen=True)
class StartFailed:
    error: str


@dataclass(frozen=True)
class Opened:
    sid: int
    error: str | None  # why the source's run could not be opened


@dataclass(frozen=True)
class Closed:
    sid: int
    error: str | None


@dataclass(frozen=True)
class Settled:
    pages: int  # pages committed (or recorded as lost) since the last `Settled`
    idle_seconds: float  # time spent waiting for input since the last `Settled`


FromWorker = Ready | StartFailed | Opened | Closed | Settled
