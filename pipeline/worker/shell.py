"""The one Scrapy item pipeline of a crawl: a thin shell that prepares pages and hands them to a runner.

Every item a spider yields is prepared here, in the crawl process (normalized; tagged and
precomputed when `split.WorkSplit` gives this process that work), then submitted to the crawl's
`runner.Runner`, which runs `pipeline.ingest.Ingest` on it — in the pipeline worker process
(`client.WorkerClient`, what `zhuanlan crawl` uses) or here (`runner.InProcessRunner`). The runner
comes from the Scrapy settings (`ZHUANLAN_RUNNER`, shared by every spider of the process); a
spider run on its own (`scrapy crawl …`) gets a private one, chosen by `ZHUANLAN_INGEST`
("worker", the default, or "in-process").

Also owns reading zhuanlan's per-run Scrapy settings (database, config, run id), with plain errors:
never `NotConfigured`, which would silently switch the pipeline off and store nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from crawler.items import STATE_OK, ArticleItem, ListPageItem, ProblemItem
from pipeline.normalize import Rejected, normalize
from pipeline.precompute import precompute
from pipeline.record import Page, Prepared, Record, SourceRef
from pipeline.tag import Tagger, vocabulary_from_path
from pipeline.worker.runner import InProcessRunner, Runner, RunnerError, RunnerSettings

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)

RUNNER_SETTING = "ZHUANLAN_RUNNER"
INGEST_SETTING = "ZHUANLAN_INGEST"


class PipelineSettingsError(RuntimeError):
    """A per-run setting is missing or wrong; the message says how to give it."""


def runner_settings(settings: Any) -> RunnerSettings:
    """The ingest's settings from a crawl's Scrapy settings (what `zhuanlan crawl` sets)."""
    url = str(settings.get("ZHUANLAN_DATABASE_URL") or "").strip()
    if not url:
        raise PipelineSettingsError(
            "ZHUANLAN_DATABASE_URL is not set: run the crawl through `zhuanlan crawl`, or pass "
            "-s ZHUANLAN_DATABASE_URL=sqlite:///data/zhuanlan.db (or set the environment variable)"
        )
    value = settings.get("ZHUANLAN_RUN_ID")
    try:
        run_id = None if value in (None, "") else int(value)
    except (TypeError, ValueError) as exc:
        raise PipelineSettingsError(f"ZHUANLAN_RUN_ID must be a crawl_runs id (an integer), got {value!r}") from exc
    config = str(settings.get("ZHUANLAN_CONFIG") or "").strip() or None
    log_file = str(settings.get("ZHUANLAN_LOG_FILE") or "").strip() or None
    return RunnerSettings(url, config, run_id, str(settings.get("LOG_LEVEL") or "WARNING"), log_file)


def check_database(url: str) -> None:
    """Fail here, in plain words, when the database is missing or has no schema (a spider run on its
    own; `zhuanlan crawl`'s crawl process leaves the database to its worker and never loads it)."""
    from sqlalchemy.engine import make_url

    from pipeline.corpus.db import is_initialised, make_engine

    engine = make_engine(url)
    try:
        if not is_initialised(engine):
            shown = make_url(url).render_as_string(hide_password=True)
            raise PipelineSettingsError(f"the database at {shown} has no schema yet: run `zhuanlan init` first")
    finally:
        engine.dispose()


def make_runner(settings: RunnerSettings, kind: str = "worker") -> Runner:
    """A runner of the given kind ("worker": the pipeline worker process; "in-process")."""
    if kind == "in-process":
        return InProcessRunner(settings)
    if kind != "worker":
        raise PipelineSettingsError(f"{INGEST_SETTING} must be 'worker' or 'in-process', got {kind!r}")
    from pipeline.worker.client import WorkerClient

    return WorkerClient(settings)


def prepare(page: Page, source: SourceRef, tagger: Tagger, *, precompute_here: bool, tag_here: bool) -> Prepared:
    """The crawl process's part of the ingest: normalize, and tag and precompute when asked. A page
    that is rejected or cannot be prepared becomes the `ProblemItem` its source's run records.
    Never raises."""
    try:
        out = normalize(page)
        if isinstance(out, Record) and out.item.state == STATE_OK:
            if tag_here:
                tagger.tag(out, source)
            if precompute_here:
                precompute(out)
        return out
    except Rejected as exc:
        log.warning("not stored: %s", exc)
        return exc.problem
    except Exception as exc:
        url = str(getattr(page, "url", "") or "")
        log.exception("could not prepare %s", url)
        return ProblemItem(
            source_key=str(getattr(page, "source_key", "") or ""),
            url=url,
            kind="pipeline",
            reason=f"could not process the page: {type(exc).__name__}: {' '.join(str(exc).split())}",
            fatal=True,
        )


class IngestPipeline:
    """ITEM_PIPELINES' only entry: prepares every item and submits it to the crawl's runner."""

    def __init__(self, runner: Runner, tagger: Tagger, crawler: Any = None, *, owns_runner: bool = False) -> None:
        self.runner = runner
        self.tagger = tagger
        self.crawler = crawler
        self.owns_runner = owns_runner
        self.sid = runner.attach(self._runner_lost)
        self.source = SourceRef("")
        self.released = False
        self._closing: asyncio.Future[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Any) -> IngestPipeline:
        wanted = runner_settings(crawler.settings)
        runner = crawler.settings.get(RUNNER_SETTING)
        owns = runner is None
        if runner is None:
            check_database(wanted.database_url)
            runner = make_runner(wanted, str(crawler.settings.get(INGEST_SETTING) or "worker"))
        # The keyword model (0.5 s of CPU, about 100 MB) is loaded by the first page tagged here:
        # a cycle that finds nothing new never loads it.
        return cls(runner, Tagger(vocabulary_from_path(wanted.config_path)), crawler, owns_runner=owns)

    def _spider(self, spider: Any) -> Any:
        if spider is None and self.crawler is not None:
            spider = self.crawler.spider
        return spider

    def _runner_lost(self, error: str) -> None:
        import asyncio

        engine = getattr(self.crawler, "engine", None)
        if engine is not None and getattr(engine, "spider", None) is not None:
            self._closing = asyncio.ensure_future(engine.close_spider_async(reason="pipeline_worker_died"))

    def open_spider(self, spider: Any = None) -> None:
        spider = self._spider(spider)
        self.source = SourceRef.from_definition(str(spider.source_key), getattr(spider, "source", None))
        self.runner.open(self.sid, self.source, self._open_failed)

    def _open_failed(self, error: str) -> None:
        log.error("%s; the source is not crawled in this run", error)
        self.runner.failures.append(error)
        self._runner_lost(error)

    # `spider` is optional: Scrapy ≥ 2.14 no longer passes it to components that do not require it.
    async def process_item(self, item: object, spider: Any = None) -> object:
        if isinstance(item, ArticleItem | ProblemItem | ListPageItem):
            precompute_here, tag_here = self.runner.split.next_page()
            prepared = prepare(item, self.source, self.tagger, precompute_here=precompute_here, tag_here=tag_here)
            await self.runner.submit(self.sid, prepared)
        return item

    async def close_spider(self, spider: Any = None) -> None:
        requests = 0
        stats = getattr(self.crawler, "stats", None)
        if stats is not None:
            requests = int(stats.get_value("downloader/request_count", 0) or 0)
        try:
            error = await self.runner.close(self.sid, requests)
            if error:
                log.error("the run of source %s could not be closed: %s", self.source.key, error)
        except RunnerError as exc:
            log.error("the run of source %s was not closed: %s", self.source.key, exc)
        finally:
            if not self.released:
                self.released = True
                self.runner.release()
