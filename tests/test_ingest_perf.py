"""The ingest speed fixes keep behaviour: signatures byte-identical to datasketch's own path, the
compact LSH table yields datasketch's candidates, concurrent crawls share one near-duplicate index,
and the benchmark's generated site pages its lists and keeps unchanged files untouched."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH
from sqlalchemy.orm import Session, sessionmaker

from bench.ingest_site import PER_PAGE, Site, list_path, paragraphs
from pipeline import dedup
from pipeline.dedup import DeduplicatePipeline
from pipeline.similarity import (
    HASH_SCHEME,
    LSH_THRESHOLD,
    NUM_PERM,
    SEED,
    SignatureIndex,
    shingle_list,
    signature,
    signature_parts,
)


def _reference_signature(text: str) -> bytes:
    """The signature as datasketch computes it with its default hash (the stored scheme)."""
    seq = shingle_list(text)
    head = seq[: max(1, len(seq) // 2)] if seq else []
    parts = []
    for items in (sorted(set(seq)), sorted(set(head))):
        m = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=HASH_SCHEME)
        if items:
            m.update_batch([s.encode("utf-8") for s in items])
        parts.append(m.hashvalues)
    return np.concatenate(parts).astype("<u8").tobytes()


def _texts(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return ["".join(paragraphs(rng, rng.randint(200, 700))) for _ in range(n)]


def test_signature_is_byte_identical_to_datasketch() -> None:
    for text in [*_texts(20), "", "a", "党建", "党建工作。"]:
        assert signature(text) == _reference_signature(text)


def test_compact_index_gives_datasketch_candidates() -> None:
    texts = _texts(120)
    reference = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=NUM_PERM)
    index = SignatureIndex()
    for i, text in enumerate(texts[:100]):
        data = signature(text)
        index.add(i, data)
        for n, part in enumerate(signature_parts(data)):
            reference.insert(f"{i}:{n}", part)
    rng = random.Random(5)
    probes = [texts[rng.randrange(100)][: rng.randint(150, 700)] + "（责任编辑：王某）" for _ in range(20)] + texts[
        100:
    ]
    hits = 0
    for probe in probes:
        data = signature(probe)
        expected = sorted({int(str(k).split(":")[0]) for p in signature_parts(data) for k in reference.query(p)})
        assert index.candidates(data) == expected
        hits += bool(expected)
    assert hits >= 20  # every truncated repost is a candidate, so the comparison is not vacuous
    assert len(index) == 100 and 7 in index and 100 not in index


def test_concurrent_crawls_share_one_index(sessions: sessionmaker[Session]) -> None:
    first = DeduplicatePipeline(sessions, share_key="db-a")
    second = DeduplicatePipeline(sessions, share_key="db-a")
    other = DeduplicatePipeline(sessions, share_key="db-b")
    for pipeline in (first, second, other):
        pipeline.open_spider()
    assert first.index is second.index
    assert other.index is not first.index
    first.close_spider()
    assert "db-a" in dedup._SHARED  # still used by the second crawl
    second.close_spider()
    other.close_spider()
    assert "db-a" not in dedup._SHARED and "db-b" not in dedup._SHARED
    third = DeduplicatePipeline(sessions, share_key="db-a")
    third.open_spider()
    assert third.index is not None and third.index is not first.index  # a fresh index, built again
    third.close_spider()


def test_generated_site_pages_lists_and_keeps_unchanged_files(tmp_path: Path) -> None:
    site = Site(tmp_path / "site", columns=4, seed=2)
    site.add(100)
    root = tmp_path / "site"
    pages = -(-100 // PER_PAGE)
    for page in range(1, pages + 1):
        html = (root / list_path("all", page).lstrip("/")).read_text(encoding="utf-8")
        assert html.count("<li>") == min(PER_PAGE, 100 - (page - 1) * PER_PAGE)
        assert ('<a href="index_' in html and ">下一页</a>" in html) == (page < pages)
    assert all((root / a.path.lstrip("/")).is_file() for a in site.articles)
    untouched = root / list_path("col2", 1).lstrip("/")
    before = untouched.stat().st_mtime_ns
    site.add(1)  # article 101 goes to column 1
    assert untouched.stat().st_mtime_ns == before
    assert site.articles[-1].path in (root / list_path("col1", 1).lstrip("/")).read_text(encoding="utf-8")
