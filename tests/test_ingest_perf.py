"""The ingest speed fixes keep behaviour: signatures of the numpy scheme equal a plain Python reference
and estimate Jaccard as MinHash should, the compact LSH table yields datasketch's candidates, concurrent
crawls share one near-duplicate index, and the benchmark's generated site pages its lists and keeps
unchanged files untouched."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bench.ingest_site import PER_PAGE, Site, list_path, paragraphs
from pipeline.corpus.models import Article
from pipeline.similarity import (
    HASH_SCHEME,
    LSH_BANDS,
    LSH_THRESHOLD,
    NUM_PERM,
    SEED,
    SignatureIndex,
    compact,
    shingle_key,
    shingle_list,
    shingles,
    signature,
    signature_parts,
)

_MASK = (1 << 64) - 1


def _key(shingle: str) -> int:
    """The scheme's shingle integer, spelled out: three code points of 21 bits, short shingles padded."""
    codes = [ord(char) for char in shingle] + [(1 << 21) - 1] * (3 - len(shingle))
    return codes[0] << 42 | codes[1] << 21 | codes[2]


def _fmix64(h: int) -> int:
    """MurmurHash3's 64-bit finalizer."""
    h ^= h >> 33
    h = h * 0xFF51AFD7ED558CCD & _MASK
    h ^= h >> 33
    h = h * 0xC4CEB9FE1A85EC53 & _MASK
    return h ^ (h >> 33)


def _reference_signature(text: str) -> bytes:
    """The signature computed one shingle and one permutation at a time with Python ints."""
    seq = shingle_list(text)
    a, b = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=HASH_SCHEME).permutations
    values: list[int] = []
    for part in (set(seq), set(seq[: max(1, len(seq) // 2)])):
        hashes = [_fmix64(_key(s)) for s in part]
        values += [
            min(((int(ak) * h + int(bk)) & _MASK for h in hashes), default=_MASK) for ak, bk in zip(a, b, strict=True)
        ]
    return b"".join(v.to_bytes(8, "little") for v in values)


def _texts(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return ["".join(paragraphs(rng, rng.randint(200, 700))) for _ in range(n)]


ODD_TEXTS = [
    "",
    "a",
    "党建",
    "党建工",
    "党建工作。",
    "，。！",  # nothing left after compact
    "👍🏻好文章👍",  # emoji are symbols: compact drops them
    "𠀀𠀁𠀂𪚥𠀀𠀁𠀃",  # CJK extension B, beyond the BMP
    "𠮷野家的𠮷字，𠮷野家。",
    "Ａｂｃ ABC abc ﬁ",  # NFKC and lower case fold these together
    "党建" * 40,  # few distinct shingles, many repeats
]


def test_signature_equals_the_plain_python_reference() -> None:
    long = "".join(paragraphs(random.Random(4), 6000))  # more shingles than one block of `_min_permuted`
    assert len(shingle_list(long)) > 2 * 2048
    for text in [*_texts(4), *ODD_TEXTS, long]:
        assert signature(text) == _reference_signature(text), text[:20]


def test_signature_depends_on_every_code_point_of_astral_text() -> None:
    assert signature("𠀀𠀁𠀂") != signature("𠀀𠀁𠀃")
    assert signature("𠀀") != signature("𠀁") != signature("𠀀𠀁")
    assert signature("你们") != signature("你") != signature("你们好")  # short texts: padded, still distinct


def test_shingle_keys_are_distinct_for_distinct_shingles() -> None:
    distinct = set().union(*(shingles(t) for t in [*_texts(10), *ODD_TEXTS]))
    distinct |= {"a", "ab", "a" + chr(0x10FFFF), chr(0x10FFFF) * 3}
    keys = {shingle_key(s) for s in distinct}
    assert len(keys) == len(distinct) and max(keys) < 1 << 63


def test_head_is_the_signature_of_the_first_half_of_the_shingles() -> None:
    for text in _texts(5, seed=8):
        c = compact(text)
        half = max(1, (len(c) - 2) // 2)  # shingles in the head
        assert signature(text)[NUM_PERM * 8 :] == signature(c[: half + 2])[: NUM_PERM * 8]


def test_signature_parts_continue_the_scheme() -> None:
    """MinHashes from stored bytes hash further shingles as `signature` does."""
    text = _texts(1, seed=9)[0]
    full, _head = signature_parts(signature(""))
    full.update_batch(shingle_list(text))
    assert np.array_equal(full.hashvalues, signature_parts(signature(text))[0].hashvalues)
    one, _ = signature_parts(signature(""))
    one.update("党建工")
    assert np.array_equal(one.hashvalues, signature_parts(signature("党建工"))[0].hashvalues)


def test_jaccard_estimates_track_the_exact_jaccard() -> None:
    rng = random.Random(21)
    bodies = _texts(60, seed=13)
    errors: list[float] = []
    for i in range(30):
        x, z = bodies[2 * i], bodies[2 * i + 1]
        share = rng.uniform(0.1, 0.95)  # the pair shares this part of x, the rest of y is other text
        y = x[: int(len(x) * share)] + z[: int(len(z) * (1 - share))]
        sx, sy = shingles(x), shingles(y)
        exact = len(sx & sy) / len(sx | sy)
        estimate = signature_parts(signature(x))[0].jaccard(signature_parts(signature(y))[0])
        errors.append(estimate - exact)
    # one estimate from 128 permutations has a standard deviation of at most 0.045
    assert max(abs(e) for e in errors) < 0.15
    assert sum(abs(e) for e in errors) / len(errors) < 0.05
    assert abs(sum(errors) / len(errors)) < 0.02  # no bias either way
    unrelated = [
        signature_parts(signature(bodies[i]))[0].jaccard(signature_parts(signature(bodies[i + 30]))[0])
        for i in range(30)
    ]
    exact_unrelated = [
        len(shingles(bodies[i]) & shingles(bodies[i + 30])) / len(shingles(bodies[i]) | shingles(bodies[i + 30]))
        for i in range(30)
    ]
    assert abs(sum(unrelated) / 30 - sum(exact_unrelated) / 30) < 0.02


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


def test_the_sources_of_one_crawl_share_one_index_and_a_new_crawl_builds_its_own(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    from pipeline.ingest import Ingest
    from pipeline.record import SourceRef
    from pipeline.tagging.vocabulary import Vocabulary
    from tests.test_pipeline_support import SOURCE, article_item, text, truncated

    ingest = Ingest(sessions.kw["bind"], Vocabulary.empty(), batched=False, clock=lambda: now)
    ingest.open_source(1, SourceRef.from_definition("czj-site", SOURCE))
    ingest.open_source(2, SourceRef.from_definition("mirror", {**SOURCE, "key": "mirror"}))
    ingest.handle(1, article_item("s1", text("original"), published_at=now))
    index = ingest.deduplicator.index
    repost = article_item("s2", truncated(text("original")), published_at=now, source_key="mirror")
    ingest.handle(2, repost)
    assert ingest.deduplicator.index is index  # one index for every source of the crawl
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Article)) == 1  # the repost found the story
    ingest.close_source(1, 1)
    ingest.close_source(2, 1)
    ingest.shutdown()
    later = Ingest(sessions.kw["bind"], Vocabulary.empty(), batched=False, clock=lambda: now)
    assert later.deduplicator.index is not index and len(later.deduplicator.index.signatures) == 0  # built on use


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


def test_permutations_are_datasketchs_own_draw() -> None:
    """The scheme's permutations are drawn without datasketch (so the crawl process can sign without
    importing it), and must stay exactly the ones datasketch draws from SEED."""
    from pipeline.similarity import _permutations

    expected = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=HASH_SCHEME).permutations
    drawn = _permutations()
    assert drawn.dtype == np.uint64
    assert np.array_equal(drawn, expected)
    assert bool((drawn[0] & np.uint64(1)).all())  # odd multipliers: bijective permutations


def test_lsh_bands_are_datasketchs_choice() -> None:
    """The bands and rows are written out (the worker then needs no SciPy); datasketch must still
    pick the same for our threshold and number of permutations."""
    reference = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=NUM_PERM)
    assert (reference.b, reference.r) == LSH_BANDS
