"""The messages between a crawl process and its pipeline worker: frozen dataclasses over one pipe.

Crawl process → worker, in order: `Open` a source, `Pages` (many at once), `Close` a source, `Stop`.
Worker → crawl process: first, when it was given a `RunSetup`, `SetupDone` or `SetupFailed`; then
`Ready` or `StartFailed` once (unless the setup said there is nothing to crawl); `Opened` and
`Closed` answering each source; `Settled` each time it has committed (or lost, and recorded as
lost) more pages, with the seconds it spent waiting for input since the last one (what
`split.WorkSplit` moves work by); last, when `Stop` asks for it, `Finished`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.record import Prepared, SourceRef


class RunSetup(Protocol):
    """The database work of a crawl run before and after its pages, done by the worker (which opens
    the database anyway) so that the crawl process never imports the database layer: `prepare` on
    start (sync the configuration, plan the run), `finish` after the last page (close the run)."""

    def prepare(self) -> tuple[int | None, Any, bool]:
        """(the run's id, the plan for the crawl process, whether anything is to be crawled)."""

    def finish(self, run_id: int | None, failures: tuple[str, ...]) -> Any:
        """The run closed, with the crawl process's `failures`: its summary."""


class SetupRefused(Exception):
    """`RunSetup` cannot go on for a reason the user can act on; the message says which."""


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
    """Store what was sent, then exit; with `failures` (the crawl process's), finish the run first."""

    failures: tuple[str, ...] | None = None


ToWorker = Open | Pages | Close | Stop


@dataclass(frozen=True)
class SetupDone:
    plan: Any  # what `RunSetup.prepare` gave the crawl process


@dataclass(frozen=True)
class SetupFailed:
    error: str
    refused: bool  # `SetupRefused`: a plain message for the user; otherwise an unexpected failure


@dataclass(frozen=True)
class Finished:
    summary: Any  # `RunSetup.finish`'s result; None with `error`
    error: str | None = None


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


FromWorker = SetupDone | SetupFailed | Ready | StartFailed | Opened | Closed | Settled | Finished
