"""Which process does the optional per-page work, page by page, so neither waits for the other.

A crawl runs in two processes (`pipeline.worker`): the crawl process fetches, extracts and
normalizes; the worker deduplicates and stores. Tagging (keywords above all) and the page-only
work (`pipeline.precompute`: signature, snapshot, search text) can be done by either, and the
split follows the load: whichever side is slower hands work to the other.
"""

from __future__ import annotations

# Share of its time the worker spent waiting for pages, from which it also tags them. A tenth: in
# a PostgreSQL backfill the worker, grouping its pages (`server.serve`), waits about 13 % of its
# time while the crawl process, which paces the fetching, tags every page; at a quarter the tags
# never moved. Interleaved backfills, 0.10 against 0.25: 9 of 12 faster, median wall time 0.95×.
WORKER_IDLE_SHARE = 0.10
# Pages whose work moves per signal: about one acknowledgement's worth, so the split follows the
# load closely (a whole window's worth overshot: measured, the work swung from side to side).
MAX_PAGES_MOVED = 64
# Pages a crawl prepares before tagging may move to the worker: the worker first loads the keyword
# model (0.4 s of CPU and about 100 MB), which only a long crawl (a backfill) wins back.
TAGS_MOVE_AFTER = 500


class WorkSplit:
    """Tagging is done by the crawl process unless the worker has time to spare: after a `Settled`
    says it spent `WORKER_IDLE_SHARE` or more of its time waiting for pages, it tags the next
    `span` pages, once the crawl has prepared `tags_move_after` pages (a short cycle never moves
    them). The page-only work is done by the worker unless the crawl process had to wait for it (a
    full window): then the crawl process does it for the next `span` pages. Either way, while the
    condition holds it starts over; when the moved work has made the other side the slower one,
    it stops, and the work moves back. A worker that falls behind for a moment (a commit) is
    absorbed by the window and changes nothing."""

    def __init__(self, span: int = MAX_PAGES_MOVED, tags_move_after: int = TAGS_MOVE_AFTER) -> None:
        self.span = span
        self.tags_move_after = tags_move_after
        self.pages = 0  # pages split so far
        self.precompute_left = 0  # pages whose page-only work the crawl process does
        self.worker_tags_left = 0  # pages the worker tags

    def crawl_waited(self) -> None:
        self.precompute_left, self.worker_tags_left = self.span, 0

    def worker_idled(self, share: float) -> None:
        if share >= WORKER_IDLE_SHARE and self.pages >= self.tags_move_after:
            self.precompute_left, self.worker_tags_left = 0, self.span

    def next_page(self) -> tuple[bool, bool]:
        """(precompute here, tag here) for the next page."""
        self.pages += 1
        precompute = self.precompute_left > 0
        if precompute:
            self.precompute_left -= 1
        tag_here = self.worker_tags_left <= 0
        if not tag_here:
            self.worker_tags_left -= 1
        return precompute, tag_here


class InProcessSplit(WorkSplit):
    """With no worker every page is tagged and precomputed by the ingest itself."""

    def next_page(self) -> tuple[bool, bool]:
        self.pages += 1
        return False, False
