"""Whole-pipeline ingest against bare Scrapy (issue 11), on a generated site served by nginx.

1. Backfill: `zhuanlan crawl --backfill` (the `site_column` spider and the full pipeline: extract,
   normalize, deduplicate, tag, store with search index) into a fresh SQLite database, against a
   bare Scrapy spider that fetches the same pages and parses title and body with CSS selectors,
   with the same concurrency settings, in the same run. Plus where the time goes: each stage timed
   over the same pages in one process.
2. No-change cycle: 100 sources (one per column list) crawled again with nothing new.
3. Incremental cycle: 1 % new articles, the list pages regenerated, crawled again.
4. Memory: peak RSS of the crawl process (the larger of it and its pipeline worker) with 2,000 and with 20,000 stories already stored.
5. PostgreSQL: the backfill on the local server, in a private schema dropped afterwards.

Bounded to about ten minutes on a 2-core machine; prints progress lines. Set
ZHUANLAN_BENCH_INGEST_PAGES to change the site size (default 2000) and
ZHUANLAN_BENCH_INGEST_REPEAT the number of backfill rounds (bare Scrapy three ways and the full pipeline on
SQLite, interleaved; default 5), ZHUANLAN_BENCH_INGEST_PG_REPEAT the PostgreSQL rounds (a bare Scrapy
run and the backfill each; default 5: its ratio scatters as much as SQLite's from one round to the next).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import machine_cpu_seconds
from bench.ingest_run import (
    ROOT,
    CrawlResult,
    PgSchema,
    counts,
    crawl,
    init,
    pg_answers,
    preload,
    write_config,
)
from bench.ingest_site import Site, StaticServer
from crawler import settings as crawler_settings

TITLE = "Ingest: full pipeline vs bare Scrapy (generated site on nginx)"
PG_URL = os.environ.get("ZHUANLAN_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
COLUMNS = 100
CONCURRENT_REQUESTS = crawler_settings.CONCURRENT_REQUESTS  # what `zhuanlan crawl` uses
CONCURRENT_REQUESTS_PER_DOMAIN = crawler_settings.CONCURRENT_REQUESTS_PER_DOMAIN
CONCURRENT_ITEMS = crawler_settings.CONCURRENT_ITEMS


def _say(message: str) -> None:
    print(f"  [ingest] {message}", flush=True)


def _stat(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    if len(values) == 1:
        return f"{fmt.format(values[0])} (n=1)"
    return (
        f"{fmt.format(statistics.median(values))} (min {fmt.format(min(values))}, "
        f"max {fmt.format(max(values))}, n={len(values)})"
    )


def _bare(list_url: str, items: int | None, *, keep_alive: bool = False) -> dict[str, float]:
    """One bare Scrapy crawl; "wall" is the whole command (as for `zhuanlan crawl`), "seconds" the crawl only.
    `keep_alive`: with the project's download handler instead of Scrapy's."""
    cmd = [
        sys.executable,
        "-m",
        "bench.ingest_bare",
        list_url,
        str(CONCURRENT_REQUESTS),
        str(CONCURRENT_REQUESTS_PER_DOMAIN),
        str(items) if items is not None else "-",
    ]
    if keep_alive:
        cmd.append("keep-alive")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True, timeout=300)
    wall = time.perf_counter() - start
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def _stages(site: Path, config: Path, url: str, limit: int) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ingest_stages", str(site), str(config), url, str(limit)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _reassign_to_columns(db: Path) -> None:
    """Make the stories backfilled through the site-wide list belong to the per-column sources
    (the URL says the column), as if each column's source had crawled them: the starting state of
    the 100-source cycles, without crawling the site a second time."""
    with sqlite3.connect(db) as conn:
        ids = dict(conn.execute("SELECT key, id FROM sources WHERE key LIKE 'col%'").fetchall())
        rows = conn.execute("SELECT id, url FROM appearances").fetchall()
        updates = []
        for appearance_id, url in rows:
            column = url.rsplit("/art_", 1)[1].split("_", 1)[0]
            updates.append((ids[f"col{column}"], appearance_id))
        conn.executemany("UPDATE appearances SET source_id = ? WHERE id = ?", updates)


def run() -> list[str]:
    pages = int(os.environ.get("ZHUANLAN_BENCH_INGEST_PAGES", "2000"))
    repeat = int(os.environ.get("ZHUANLAN_BENCH_INGEST_REPEAT", "5"))
    pg_repeat = int(os.environ.get("ZHUANLAN_BENCH_INGEST_PG_REPEAT", "5"))
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="zhuanlan-ingest-"))
    work.chmod(0o755)  # nginx workers run as another user
    out: list[str] = []
    server: StaticServer | None = None
    try:
        t0 = time.perf_counter()
        site = Site(work / "site", columns=COLUMNS)
        site.add(pages)
        reposts = sum(1 for a in site.articles if a.repost_of is not None)
        sizes = [len((work / "site" / a.path.lstrip("/")).read_bytes()) for a in site.articles[:200]]
        chars = [sum(len(p) for p in a.paragraphs) for a in site.articles[:200]]
        _say(f"site: {pages} article pages ({reposts} reposts) generated in {time.perf_counter() - t0:.1f} s")
        server = StaticServer(work / "site", work / "nginx").start()
        _say(f"serving on {server.base} with {server.kind}")
        all_list = f"{server.base}/col/all/index.html"

        # -- 1. backfill: rounds of bare Scrapy (our concurrency settings, and Scrapy's default
        #    CONCURRENT_ITEMS for reference) and the full pipeline, interleaved, so that a machine
        #    that speeds up or slows down during the module affects both sides of each ratio alike
        bare: list[dict[str, float]] = []
        bare_default: list[dict[str, float]] = []
        bare_keep_alive: list[dict[str, float]] = []
        full: list[CrawlResult] = []
        full_counts = []
        db = work / "db" / "backfill.db"
        for i in range(repeat):
            bare.append(_bare(all_list, CONCURRENT_ITEMS))
            bare_default.append(_bare(all_list, None))
            bare_keep_alive.append(_bare(all_list, CONCURRENT_ITEMS, keep_alive=True))
            if db.parent.exists():
                shutil.rmtree(db.parent)
            db.parent.mkdir(parents=True)
            url = _sqlite_url(db)
            cfg = write_config(
                work / "cfg-backfill" / "zhuanlan.toml", server.base, url, sources=[("all", "/col/all/")]
            )
            init(cfg, url)
            full.append(crawl(cfg, url, "--backfill"))
            full_counts.append(counts(url, 1))
            _say(
                f"round {i + 1}: bare Scrapy {bare[-1]['wall']:.1f} s (crawl {bare[-1]['seconds']:.1f} s), with "
                f"CONCURRENT_ITEMS 100 {bare_default[-1]['wall']:.1f} s, with our keep-alive handler "
                f"{bare_keep_alive[-1]['wall']:.1f} s; full pipeline {full_counts[-1].appearances} "
                f"pages stored ({full_counts[-1].articles} stories) in {full[-1].seconds:.1f} s, "
                f"CPU {full[-1].cpu_seconds:.1f} s, peak RSS {full[-1].peak_rss_mb:.0f} MB"
            )
        bare_rates = [b["articles"] / b["wall"] for b in bare]
        default_rates = [b["articles"] / b["wall"] for b in bare_default]
        full_rates = [c.appearances / r.seconds for c, r in zip(full_counts, full, strict=True)]
        full_cpu = [r.cpu_seconds for r in full]
        # each round's ratio (its own baseline), then their median
        ratios = [f / b for f, b in zip(full_rates, bare_rates, strict=True)]
        default_ratios = [d / b for d, b in zip(default_rates, bare_rates, strict=True)]
        keep_alive_rates = [b["articles"] / b["wall"] for b in bare_keep_alive]
        keep_alive_ratios = [k / b for k, b in zip(keep_alive_rates, bare_rates, strict=True)]
        # the pipeline against the bare spider with the same download handler: what is left when the
        # connection reuse (which helps any Scrapy crawl without a delay) is taken out of the ratio
        full_to_keep_alive = [f / k for f, k in zip(full_rates, keep_alive_rates, strict=True)]
        fc = full_counts[-1]

        # where the time goes: every stage timed in one process over the first pages
        stage_db = work / "db-stages" / "stages.db"
        stage_db.parent.mkdir(parents=True)
        stage_url = _sqlite_url(stage_db)
        init(cfg, stage_url)
        stage_pages = min(500, pages)
        stages = _stages(work / "site", cfg, stage_url, stage_pages)
        spent: dict[str, float] = stages["seconds"]  # type: ignore[assignment]
        total_stage = sum(spent.values())
        _say(f"stage timers over {stage_pages} pages: " + ", ".join(f"{k} {v:.1f} s" for k, v in spent.items()))

        out += [
            f"Site: {pages} article pages ({reposts} near-duplicate reposts), article pages "
            f"{min(sizes) / 1024:.1f}–{max(sizes) / 1024:.1f} KB with {min(chars)}–{max(chars)} characters of text; "
            f"`html` lists of 20 per page with 下一页; served by {server.kind} on loopback.",
            f"Both crawlers: CONCURRENT_REQUESTS {CONCURRENT_REQUESTS}, CONCURRENT_REQUESTS_PER_DOMAIN "
            f"{CONCURRENT_REQUESTS_PER_DOMAIN}, CONCURRENT_ITEMS {CONCURRENT_ITEMS} (crawler/settings.py), DOWNLOAD_DELAY 0, "
            "AutoThrottle off, robots.txt obeyed. Every time is the whole command, from starting Python to its exit "
            "(bare Scrapy's crawl alone in brackets); CPU is user + system of the crawl process and its pipeline worker. "
            f"{repeat} rounds, each one bare Scrapy run of each of the three kinds below and one full-pipeline run; "
            "a ratio is each round's rate over that round's baseline, median (min, max) over the rounds. Our crawl "
            "fetches with its own download handler (`crawler/http.py`); the baseline with Scrapy's.",
            "",
            "### Backfill (one source over the whole site)",
            "",
            "| crawler | articles/s | wall s | CPU s | requests | stored | ratio to bare Scrapy |",
            "|---|---|---|---|---|---|---|",
            f"| bare Scrapy, CSS title + body (baseline) | {_stat(bare_rates)} | {_stat([b['wall'] for b in bare])} "
            f"(crawl {_stat([b['seconds'] for b in bare])}) | — | {bare[-1]['requests']:.0f} | — | 1.00 |",
            f"| bare Scrapy as above, Scrapy's default CONCURRENT_ITEMS 100 (for reference) | {_stat(default_rates)} "
            f"| {_stat([b['wall'] for b in bare_default])} (crawl {_stat([b['seconds'] for b in bare_default])}) | — "
            f"| {bare_default[-1]['requests']:.0f} | — | {_stat(default_ratios, '{:.2f}')} |",
            f"| bare Scrapy as the baseline, with our download handler (`crawler/http.py`: idle keep-alive "
            f"connections kept, for reference) | {_stat(keep_alive_rates)} | {_stat([b['wall'] for b in bare_keep_alive])} "
            f"(crawl {_stat([b['seconds'] for b in bare_keep_alive])}) | — | {bare_keep_alive[-1]['requests']:.0f} | — "
            f"| {_stat(keep_alive_ratios, '{:.2f}')} |",
            f"| `zhuanlan crawl --backfill`, SQLite | {_stat(full_rates)} | {_stat([r.seconds for r in full])} "
            f"| {_stat(full_cpu)} | {sum(fc.requests)} | {fc.articles} stories, {fc.appearances} appearances, "
            f"{fc.indexed} indexed, {fc.reposts} reposts merged | **{_stat(ratios, '{:.2f}')}** |",
        ]

        # -- 5. PostgreSQL (the same backfill), each round right after a bare Scrapy run of its own: the
        #    machine's speed drifts over the module, and the ratio is taken within a round
        pg_line = ""
        pg_goal = ""
        if pg_answers(PG_URL):
            with PgSchema(PG_URL, f"bench_ingest_{os.getpid()}") as schema:
                pg_cfg = write_config(
                    work / "cfg-pg" / "zhuanlan.toml", server.base, schema.url, sources=[("all", "/col/all/")]
                )
                pg_runs: list[CrawlResult] = []
                pg_rates: list[float] = []
                pg_bare: list[float] = []
                machine: list[float] = []
                for i in range(pg_repeat):
                    baseline = _bare(all_list, CONCURRENT_ITEMS)
                    pg_bare.append(baseline["articles"] / baseline["wall"])
                    if i:  # a fresh schema for every backfill
                        schema.reset()
                    init(pg_cfg, schema.url)
                    busy = machine_cpu_seconds()
                    pg_runs.append(crawl(pg_cfg, schema.url, "--backfill"))
                    machine.append(machine_cpu_seconds() - busy)
                    pc = counts(schema.url, 1)
                    pg_rates.append(pc.appearances / pg_runs[-1].seconds)
                    _say(
                        f"PostgreSQL round {i + 1}: bare Scrapy {baseline['wall']:.1f} s; backfill {pc.appearances} "
                        f"pages in {pg_runs[-1].seconds:.1f} s (ratio {pg_rates[-1] / pg_bare[-1]:.2f})"
                    )
            pg_ratios = [p / b for p, b in zip(pg_rates, pg_bare, strict=True)]
            pg_line = (
                f"| `zhuanlan crawl --backfill`, PostgreSQL | {_stat(pg_rates)} | {_stat([r.seconds for r in pg_runs])} "
                f"| {_stat([r.cpu_seconds for r in pg_runs])} | {sum(pc.requests)} | {pc.articles} stories, "
                f"{pc.appearances} appearances, {pc.indexed} indexed, {pc.reposts} reposts merged "
                f"| **{_stat(pg_ratios, '{:.2f}')}** (each round to a bare Scrapy run of its own, {_stat(pg_bare)} "
                "articles/s) |"
            )
            pg_cpu = statistics.median(r.cpu_seconds for r in pg_runs)
            pg_wall = statistics.median(r.seconds for r in pg_runs)
            pg_note = (
                f"PostgreSQL here shares the machine's {os.cpu_count()} cores with the crawl: during its backfills the "
                f"whole machine was busy {_stat(machine)} CPU s (crawl process and pipeline worker {pg_cpu:.1f}, the "
                f"rest mostly the PostgreSQL server and nginx) in {pg_wall:.1f} s of wall time. The crawl's own CPU "
                f"spread over the same cores, with the database on a host of its own (docs/scaling.md), is "
                f"{pg_cpu / (os.cpu_count() or 1):.1f} s: a ratio of "
                f"{pc.appearances / (pg_cpu / (os.cpu_count() or 1)) / statistics.median(pg_bare):.2f} at best."
            )
            pg_goal = (
                f" Goal (issue 20): PostgreSQL at least half the bare Scrapy rate in the same run. Median ratio "
                f"{statistics.median(pg_ratios):.3f}: {'met' if statistics.median(pg_ratios) >= 0.5 else 'not met'}."
            )
        else:
            pg_line = f"| PostgreSQL | skipped: no server answers at {PG_URL} | | | | | |"
            pg_note = ""
        goal = statistics.median(ratios)
        out += [
            pg_line,
            "",
            *([pg_note, ""] if pg_note else []),
            f"Goal (issue 11): the full pipeline reaches at least half the bare Scrapy rate. Median ratio on SQLite "
            f"{goal:.2f}: {'met' if goal >= 0.5 else 'not met'}. Against bare Scrapy with the same download handler "
            f"(the keep-alive connections helping both sides alike): {_stat(full_to_keep_alive, '{:.2f}')}.{pg_goal}",
            "",
        ]

        per_article = {k: v / stage_pages * 1000 for k, v in spent.items()}
        in_crawl = ("extract", "normalize", "tag")  # pipeline/worker/shell.py; the rest runs in the worker
        crawl_ms = sum(v for k, v in per_article.items() if k in in_crawl)
        worker_ms = sum(v for k, v in per_article.items() if k not in in_crawl)
        out += [
            f"Where the time goes (each stage timed in one process over the first {stage_pages} pages, SQLite, "
            "`bench/ingest_stages.py`, as the worker runs them: SAVEPOINT per page, a commit per 64). In a crawl "
            "the crawl process fetches, extracts, normalizes and tags; the pipeline worker process, on the other "
            "core, precomputes (the MinHash signature, snapshot digest, search text), deduplicates and stores. Page "
            "by page the split moves: the worker tags while it waits for pages, and the crawl process precomputes "
            "while it waits for the worker (`WorkSplit` in pipeline/worker/split.py):",
            "",
            "| stage | process | ms per article | share |",
            "|---|---|---|---|",
            *[
                f"| {k} | {'crawl' if k in in_crawl else 'worker'} | {v:.2f} | {spent[k] / total_stage:.0%} |"
                for k, v in per_article.items()
            ],
            f"| all stages | | {sum(per_article.values()):.2f} | 100% |",
            f"| of which in the crawl process / in the worker | | {crawl_ms:.2f} / {worker_ms:.2f} | |",
            f"| (bare Scrapy, whole command, per article) | | {1000 / statistics.median(bare_rates):.2f} | |",
            "",
        ]

        # -- 2. no-change cycle over 100 sources
        cyc_dir = work / "db-cycles"
        cyc_dir.mkdir()
        cyc_db = cyc_dir / "cycles.db"
        with sqlite3.connect(db) as src, sqlite3.connect(cyc_db) as dst:
            src.backup(dst)
        cyc_url = _sqlite_url(cyc_db)
        sources = [(f"col{c}", f"/col/col{c}/") for c in range(1, COLUMNS + 1)]
        cyc_cfg = write_config(work / "cfg-cycles" / "zhuanlan.toml", server.base, cyc_url, sources=sources)
        init(cyc_cfg, cyc_url)
        _reassign_to_columns(cyc_db)
        warm = crawl(cyc_cfg, cyc_url)  # first visit of the column lists: 200s, validators stored
        run_id = 1 + 1  # the backfill's run, then this one
        warm_counts = counts(cyc_url, run_id)
        _say(f"100 sources, first visit: {sum(warm_counts.requests)} requests in {warm.seconds:.1f} s")
        nochange: list[CrawlResult] = []
        nochange_requests: list[list[int]] = []
        for _ in range(3):
            run_id += 1
            nochange.append(crawl(cyc_cfg, cyc_url))
            nochange_requests.append(counts(cyc_url, run_id).requests)
            _say(f"no-change cycle: {sum(nochange_requests[-1])} requests in {nochange[-1].seconds:.1f} s")
        per_source = sorted({r for reqs in nochange_requests for r in reqs})

        # -- 3. incremental cycles: 1 % new articles each
        incr: list[CrawlResult] = []
        incr_counts = []
        new_each = max(1, pages // 100)
        for _ in range(3):
            site.add(new_each)
            run_id += 1
            incr.append(crawl(cyc_cfg, cyc_url))
            incr_counts.append(counts(cyc_url, run_id))
            _say(
                f"incremental cycle (+{new_each}): {sum(incr_counts[-1].requests)} requests, "
                f"{incr_counts[-1].new_stories} new stories in {incr[-1].seconds:.1f} s"
            )

        out += [
            f"### Cycles over {COLUMNS} sources (one per column list; {pages // COLUMNS} stored articles each)",
            "",
            "| cycle | requests (all sources) | requests per source | new stories | wall s |",
            "|---|---|---|---|---|",
            f"| first visit after backfill (lists fetched, validators stored) | {sum(warm_counts.requests)} "
            f"| {sorted(set(warm_counts.requests))} | {warm_counts.new_stories} | {warm.seconds:.1f} |",
            f"| no change | {_stat([float(sum(r)) for r in nochange_requests], '{:.0f}')} | {per_source} (goal: 1 + robots.txt) "
            f"| 0 | {_stat([r.seconds for r in nochange])} |",
            f"| +1 % articles ({new_each} new, lists regenerated) | "
            f"{_stat([float(sum(c.requests)) for c in incr_counts], '{:.0f}')} | "
            f"{sorted({r for c in incr_counts for r in c.requests})} "
            f"| {_stat([float(c.new_stories) for c in incr_counts], '{:.0f}')} | {_stat([r.seconds for r in incr])} |",
            "",
        ]

        # -- 4. memory: the same incremental cycle with 20,000 stories stored
        stored_before = counts(cyc_url, run_id).articles
        target = 10 * pages
        preload(cyc_url, target - stored_before)
        big_counts = counts(cyc_url, run_id)
        site.add(new_each)
        run_id += 1
        big = crawl(cyc_cfg, cyc_url)
        big_run = counts(cyc_url, run_id)
        _say(
            f"incremental cycle with {big_counts.articles} stored: {big_run.new_stories} new, "
            f"{big.seconds:.1f} s, peak RSS {big.peak_rss_mb:.0f} MB"
        )
        out += [
            "### Memory (peak RSS: the larger of the `zhuanlan crawl` process and its pipeline worker)",
            "",
            "| crawl | stories stored before | pages fetched | peak RSS MB | wall s |",
            "|---|---|---|---|---|",
            f"| backfill, 1 source | 0 | {sum(fc.requests)} | {_stat([r.peak_rss_mb for r in full], '{:.0f}')} "
            f"| {_stat([r.seconds for r in full])} |",
            f"| +1 % cycle, {COLUMNS} sources | {stored_before - new_each} | "
            f"{sum(incr_counts[-1].requests)} | {incr[-1].peak_rss_mb:.0f} | {incr[-1].seconds:.1f} |",
            f"| +1 % cycle, {COLUMNS} sources | {big_counts.articles} ({big_counts.articles - stored_before} "
            f"preloaded with random signatures) | {sum(big_run.requests)} | {big.peak_rss_mb:.0f} | {big.seconds:.1f} |",
            "",
            f"The 20,000-page point is a stored corpus, not a 20,000-page crawl: crawling 20,000 pages through the "
            f"full pipeline would take about {10 * pages / statistics.median(full_rates):.0f} s here. "
            f"Whole module: {time.perf_counter() - started:.0f} s.",
        ]
        return out
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print("\n".join(run()))
