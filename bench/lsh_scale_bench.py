"""The near-duplicate index at scale: a page's candidates from the sorted bands of
`similarity.SignatureIndex` against a scan of every stored band key (the baseline: how the index
answered before, and what brute force over the band keys costs), with 10,000 to 1,000,000 stored
stories; plus the index's memory and the sort a crawl's first decision pays after loading every
stored signature.

Signatures are random (the cost of a lookup does not depend on the text); every tenth query shares
one band with a stored story, so both sides must find it. Set ZHUANLAN_BENCH_LSH_SIZES to change the
corpus sizes (default 10000,100000,1000000).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator

import numpy as np

from pipeline.similarity import LSH_BANDS, NUM_PERM, SignatureIndex, band_keys, signature_halves

TITLE = "Near-duplicate index at scale: sorted bands vs a scan of every stored band key"
QUERIES = 200
SCANNED = 20  # the baseline's queries: it takes up to a tenth of a second each at a million


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _signatures(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**63, size=(n, 2 * NUM_PERM), dtype=np.uint64)


def _stored(n: int, seed: int) -> Iterator[tuple[int, bytes]]:
    """The stored stories' signatures, the same for the same seed."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, 50_000):
        for offset, values in enumerate(_signatures(rng, min(50_000, n - start))):
            yield start + offset + 1, values.astype("<u8").tobytes()


def _timed_queries(index: SignatureIndex, queries: list[tuple[int | None, bytes]]) -> tuple[list[float], int]:
    """Seconds of each query's `candidates`, and how many found the story planted in them."""
    times = []
    found = 0
    for expected, data in queries:
        t0 = time.perf_counter()
        candidates = index.candidates(data)
        times.append(time.perf_counter() - t0)
        found += expected in candidates
    return times, found


def _one(n: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed + 1)
    bands, rows = LSH_BANDS
    index = SignatureIndex()
    before = _rss_mb()
    planted: list[tuple[int, bytes]] = []
    load = 0.0
    chunk: list[tuple[int, bytes]] = []
    for article_id, data in _stored(n, seed):
        chunk.append((article_id, data))
        if len(planted) < QUERIES // 10 and rng.random() < QUERIES / n:
            planted.append((article_id, data))
        if len(chunk) == 50_000 or article_id == n:  # as a crawl's first catch-up loads them (`add_many`)
            t0 = time.process_time()
            index.add_many(chunk)
            load += time.process_time() - t0
            chunk = []
    t0 = time.perf_counter()
    index.candidates(_signatures(rng, 1)[0].astype("<u8").tobytes())  # the first query sorts what was loaded
    first = time.perf_counter() - t0
    index_mb = _rss_mb() - before
    queries: list[tuple[int | None, bytes]] = [
        (None, values.astype("<u8").tobytes()) for values in _signatures(rng, QUERIES - len(planted))
    ]
    for article_id, data in planted:  # a repost: shares band 3 with a stored story
        values = _signatures(rng, 1)[0]
        values[3 * rows : 4 * rows] = np.frombuffer(data, dtype="<u8")[3 * rows : 4 * rows]
        queries.append((article_id, values.astype("<u8").tobytes()))
    times, found = _timed_queries(index, queries)
    # The same queries once the stories a crawl stores since the last merge wait unsorted: at most
    # RECENT_MAX parts, two a story, added one by one as the ingest adds them.
    for offset, values in enumerate(_signatures(rng, SignatureIndex.RECENT_MAX // 2)):
        index.add(n + 1 + offset, values.astype("<u8").tobytes())
    recent_times, found_again = _timed_queries(index, queries)
    table = np.stack([band_keys(part) for _, data in _stored(n, seed) for part in signature_halves(data)])
    owners = np.repeat(np.arange(1, n + 1), 2)
    scan_times = []
    scan_found = 0
    for expected, data in queries[-SCANNED:]:  # the planted ones among them
        t0 = time.perf_counter()
        hits: set[int] = set()
        for part in signature_halves(data):
            hits.update(owners[(table == band_keys(part)).any(axis=1)].tolist())
        scan_times.append(time.perf_counter() - t0)
        scan_found += expected in hits
    planted_scanned = sum(expected is not None for expected, _ in queries[-SCANNED:])
    assert found == found_again == len(planted) and scan_found == planted_scanned, (found, scan_found)
    assert bands == table.shape[1]
    return {
        "n": n,
        "query_ms": statistics.median(times) * 1e3,
        "query_p95_ms": sorted(times)[int(len(times) * 0.95)] * 1e3,
        "recent_ms": statistics.median(recent_times) * 1e3,
        "scan_ms": statistics.median(scan_times) * 1e3,
        "load_s": load,
        "first_s": first,
        "index_mb": index_mb,
        "planted": len(planted),
    }


def run() -> list[str]:
    sizes = [int(s) for s in os.environ.get("ZHUANLAN_BENCH_LSH_SIZES", "10000,100000,1000000").split(",")]
    results = []
    for n in sizes:
        results.append(_one(n, seed=n))
        r = results[-1]
        print(
            f"  [lsh] {n} stored: query {r['query_ms']:.3f} ms ({r['recent_ms']:.3f} ms with a full unsorted table; "
            f"scan {r['scan_ms']:.1f} ms), load {r['load_s']:.1f} s "
            f"+ first sort {r['first_s']:.1f} s, {r['index_mb']:.0f} MB",
            flush=True,
        )
    out = [
        f"Random signatures ({NUM_PERM} values a part, whole text and head: two parts a story), {LSH_BANDS[0]} bands "
        f"of {LSH_BANDS[1]} rows; {QUERIES} queries a size, of which one in ten shares a band with a stored story "
        f"(found by both sides); the scan on {SCANNED} of them. The same queries again once "
        f"{SignatureIndex.RECENT_MAX // 2:,} more stories were added one by one, the most that wait unsorted "
        f"before a merge ({SignatureIndex.RECENT_MAX:,} parts). One process, in memory.",
        "",
        "| stored stories | candidates of a page: sorted bands, median (p95) | with the unsorted table full, median "
        "| scan of every band key (baseline) "
        "| speed-up | load (`add_many` of every stored signature) | first query (sorts the load) | index memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        out.append(
            f"| {r['n']:,} | {r['query_ms']:.3f} ms ({r['query_p95_ms']:.3f}) | {r['recent_ms']:.3f} ms | {r['scan_ms']:.1f} ms "
            f"| {r['scan_ms'] / r['query_ms']:.0f}x | {r['load_s']:.1f} s CPU | {r['first_s']:.1f} s "
            f"| {r['index_mb']:.0f} MB |"
        )
    out.append("")
    return out
