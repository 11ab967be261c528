"""Where a crawl's ingest runs: one interface, two interchangeable implementations.

`Runner` is what the Scrapy shell (`pipeline.worker.shell`) talks to: open a source, submit its
pages, close it. `InProcessRunner` runs `pipeline.ingest.Ingest` in the crawl process itself (a
commit per page; simple, and what a single-core machine or a debugging session wants);
`pipeline.worker.client.WorkerClient` hands the pages to the pipeline worker process (batched
commits on the other core: what `zhuanlan crawl` uses). Both record the same rows; the tests run
the same crawls through either.

A runner is shared by every spider of the crawl process (`zhuanlan crawl` makes one and puts it in
the Scrapy settings, `ZHUANLAN_RUNNER`); it stops when the last user releases it. Copying the
settings (Scrapy copies them per crawler) shares the runner rather than copying it.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.worker.split import InProcessSplit, WorkSplit

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipeline.ingest import Ingest
    from pipeline.record import Prepared, SourceRef

log = logging.getLogger(__name__)


class RunnerError(RuntimeError):
    """The ingest could not start, or stopped before it finished."""


class Runner(Protocol):
    split: WorkSplit
    failures: list[str]  # what went wrong with the ingest itself: the crawl run reports it

    def attach(self, on_lost: Callable[[str], None]) -> int:
        """One more user (a spider's pipeline); returns its source number."""

    def open(self, sid: int, source: SourceRef, on_error: Callable[[str], None]) -> None:
        """Open the source's run (without waiting); `on_error(reason)` if it cannot be opened."""

    async def submit(self, sid: int, page: Prepared) -> None:
        """Hand over one page (waits only while the ingest is too far behind)."""

    async def close(self, sid: int, requests: int) -> str | None:
        """Close the source's run once its pages are stored; the error, if it could not be closed."""

    def release(self) -> None:
        """One user less; the last one stops the runner."""


@dataclass(frozen=True)
class RunnerSettings:
    """What a runner needs to open the ingest (passed at start; no config is read from the environment)."""

    database_url: str
    config_path: str | None
    run_id: int | None
    log_level: str = "WARNING"
    log_file: str | None = None  # where the worker logs (appending; the crawl process rotates it)


class SharedBySettings:
    """Scrapy copies its settings (deep copies) for every crawler: a runner put there is shared."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedBySettings:
        return self

    def __copy__(self) -> SharedBySettings:
        return self


class InProcessRunner(SharedBySettings):
    """The ingest in the crawl process, not batched: each page is stored (committed) when it is submitted."""

    def __init__(self, settings: RunnerSettings) -> None:
        self.settings = settings
        self.split: WorkSplit = InProcessSplit()
        self.failures: list[str] = []
        self.users = 0
        self._sids = itertools.count(1)
        self._ingest: Ingest | None = None

    def _open_ingest(self) -> Ingest:
        if self._ingest is None:
            from pipeline.worker.server import open_ingest

            self._ingest = open_ingest(self.settings, batched=False)
        return self._ingest

    def attach(self, on_lost: Callable[[str], None]) -> int:
        self.users += 1
        return next(self._sids)

    def open(self, sid: int, source: SourceRef, on_error: Callable[[str], None]) -> None:
        try:
            self._open_ingest().open_source(sid, source)
        except Exception as exc:
            from pipeline.worker.server import error_text

            log.exception("could not open the run of source %s", source.key)
            on_error(f"could not start the run of source {source.key}: {error_text(exc)}")

    async def submit(self, sid: int, page: Prepared) -> None:
        self._open_ingest().handle(sid, page)

    async def close(self, sid: int, requests: int) -> str | None:
        try:
            self._open_ingest().close_source(sid, requests)
        except Exception as exc:
            from pipeline.worker.server import error_text

            return error_text(exc)
        return None

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self._ingest is not None:
            ingest, self._ingest = self._ingest, None
            ingest.shutdown()
