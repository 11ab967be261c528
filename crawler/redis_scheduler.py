"""The request frontier of a source's crawl, in Redis through scrapy-redis (issue 20).

When `[distributed] redis_url` is set, every crawl schedules its requests with scrapy-redis: its
`Scheduler` keeps the requests waiting to be fetched in a Redis sorted set and its
`RFPDupeFilter` the fingerprints of the requests already scheduled in a Redis set. This module
configures them (`FrontierScheduler` is a subclass); it copies nothing of theirs. The keys and
settings are `crawler.frontier`'s.

What it adds:

- **Keys per source job, not per spider.** scrapy-redis keys a frontier by spider name; ours are
  one per source kind and one process crawls several sources. `FrontierScheduler` keys each
  spider's frontier by (key prefix, crawl run, source): `frontier_keys`. A source of a run is one
  job of the source queue (`crawler.queue`), so a frontier belongs to exactly one job.
- **Kept while the job is held, gone when it is done.** In a crawl worker's child
  (`SCHEDULER_PERSIST`) a frontier outlives the process unless the spider ran to its end; the
  worker deletes it when the job is done (`SourceQueue.done`, in the same script). A crawl
  without a worker (`zhuanlan crawl`) deletes its frontier whenever its spider closes.
- **Resuming a dead worker's frontier** (`FrontierScheduler.open`). A frontier that already
  exists when a spider opens was left by a process of the same job that died (killed, or its
  lease ended). Its queued requests are fetched by the new process as they are; the seen-set is
  rebuilt from the queue alone, and the spider starts again from its start requests. A frontier
  it cannot read (left by a version that pickled its requests, or written by someone else) is
  cleared instead, as a non-resumable one is.
- **JSON, not pickle** (`crawler.request_codec`): a queued request is read back without running
  anything it holds.

Why no article is lost and at most a few are fetched twice. scrapy-redis pops a request when it
hands it to the downloader, so at the moment the old process died each article request of the
job was in one of four places:

1. never scheduled (its list page not yet read): the re-read list pages schedule it;
2. in the queue: it is fetched from the queue, once: it is in the rebuilt seen-set, so the
   re-read list pages do not schedule it again;
3. popped and stored: the new crawl's spider knows its key (known keys are read from the
   database when the crawl starts) and does not request it;
4. popped and not stored (in the downloader, the spider or the ingest when the process died):
   it is neither queued nor in the rebuilt seen-set, so the re-read list pages schedule it
   again — these are the only articles fetched twice: at most the spider's requests in flight
   (`crawler.frontier.IN_FLIGHT`, 4) plus the pages its ingest had not committed yet (a batch
   commits after a second or 64 pages, `pipeline.ingest`): with a host's delay of a second, a
   page or two per source; on a loopback site without delay, a second's worth
   (tests/test_distributed_frontier.py measures them).

List pages follow the same cases, except that a list page popped before the death is read again
(that is how case 4 is found); a list request still queued is not scheduled twice. The ingest
recognises a page stored twice anyway (canonical key), so a fifth case cannot make a duplicate.

A WeChat album spider keeps its article chain in memory (one article at a time, in order, with a
delay): a request resumed from the queue would start a second chain. Its frontier is cleared on
resume instead (`RESUMABLE_KINDS`): the album is read again and the stored articles are skipped.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from scrapy.exceptions import ScrapyDeprecationWarning
from scrapy.utils.request import request_from_dict
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.scheduler import Scheduler

from crawler.frontier import frontier_keys, resumes

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

# scrapy-redis 0.9.1 still passes `spider=` to the stats and calls Spider.log(), which Scrapy 2.19
# deprecates: one warning per crawl process in the crawl log, about code that is not ours.
warnings.filterwarnings("ignore", category=ScrapyDeprecationWarning, module=r"scrapy_redis\.")


class FrontierScheduler(Scheduler):  # type: ignore[misc]  # scrapy-redis has no type hints
    """scrapy-redis' scheduler with its keys per source job, resuming a dead crawl's frontier."""

    prefix: str
    run_id: int
    resumed: int = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> FrontierScheduler:
        scheduler: FrontierScheduler = super().from_crawler(crawler)
        settings = crawler.settings
        scheduler.prefix = str(settings.get("ZHUANLAN_REDIS_PREFIX") or "zhuanlan")
        scheduler.run_id = settings.getint("ZHUANLAN_RUN_ID")
        return scheduler

    def open(self, spider: Spider) -> None:
        keys = frontier_keys(self.prefix, self.run_id, str(getattr(spider, "source_key", spider.name)))
        self.queue_key = keys.requests
        self.df = RFPDupeFilter(self.server, key=keys.seen, debug=spider.settings.getbool("DUPEFILTER_DEBUG"))
        left_behind = bool(self.server.exists(keys.requests, keys.seen))
        super().open(spider)
        if not left_behind:
            return
        if not resumes(str(spider.name)):
            self.flush()
            spider.logger.warning("a dead crawl's frontier of %s was cleared: its spider starts over", keys.requests)
            return
        try:
            self.resumed = self._reseed_seen()
        except ValueError as exc:  # not our JSON (a version that pickled, or forged): never executed
            self.flush()
            spider.logger.warning(
                "a dead crawl's frontier %s could not be read (%s): cleared, its spider starts over", keys.requests, exc
            )
            return
        if self.stats is not None:
            self.stats.set_value("frontier/resumed", self.resumed)
        spider.logger.warning("resuming %d request(s) a dead crawl left in %s", self.resumed, keys.requests)

    def _reseed_seen(self) -> int:
        """The seen-set becomes the queued requests' fingerprints; returns how many are queued."""
        queued = self.server.zrange(self.queue_key, 0, -1)
        fingerprints = [
            self.df.request_fingerprint(request_from_dict(self.queue.serializer.loads(data), spider=self.spider))
            for data in queued
        ]
        with self.server.pipeline(transaction=True) as pipe:
            pipe.delete(self.df.key)
            if fingerprints:
                pipe.sadd(self.df.key, *fingerprints)
            pipe.execute()
        return len(queued)

    def close(self, reason: str) -> None:
        if reason == "finished":
            # The spider ran to its end: the queue is empty and the seen-set has no further use.
            self.flush()
            return
        super().close(reason)  # kept when SCHEDULER_PERSIST (the job's next holder resumes it)
