"""Deduplicate stage: the evaluation set (reposts merged, template traps and same-topic articles
kept apart), decisions by key / hash / near duplicate, and the signature round trip through the DB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pytest
from datasketch import MinHash
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

import pipeline.dedup
import pipeline.similarity
from crawler.items import STATE_DELETED
from pipeline.corpus.models import Article
from pipeline.dedup import Deduplicator
from pipeline.precompute import precompute
from pipeline.record import EDIT, NEW_APPEARANCE, NEW_STORY, STATE_CHANGE, UNCHANGED, Outcome, Record
from pipeline.similarity import (
    NUM_PERM,
    SIGNATURE_SCHEME,
    SignatureIndex,
    compact,
    overlap,
    shingle_list,
    signature,
    signature_parts,
)
from tests.test_pipeline_support import Crawl, article_item, reformatted, text, truncated

ORIGINAL = text("original")

POSITIVES: dict[str, Callable[[], str]] = {
    "repost with another header and footer": lambda: text("repost_header_footer"),
    "formatting only": lambda: reformatted(ORIGINAL),
    "small edits": lambda: text("small_edits"),
    "truncated to the first half": lambda: truncated(ORIGINAL),
}
NEGATIVES: dict[str, tuple[str, str]] = {
    "two notices sharing ~80% template": ("notice_reading_class", "notice_lecture"),
    "two articles by one unit on one topic": ("original", "same_unit_other"),
}


# --- pure similarity --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(POSITIVES))
def test_positive_pairs_confirmed(name: str) -> None:
    found = overlap(ORIGINAL, POSITIVES[name]())
    assert found is not None and found.is_duplicate, found


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_negative_pairs_rejected(name: str) -> None:
    a, b = NEGATIVES[name]
    found = overlap(text(a), text(b))
    assert found is not None and not found.is_duplicate, found


def test_template_trap_passes_the_containment_floor_but_not_the_interior_check() -> None:
    # Why the interior check exists: the two notices look alike by every whole-text measure.
    found = overlap(text("notice_reading_class"), text("notice_lecture"))
    assert found is not None
    assert found.containment >= 0.8 and found.jaccard >= 0.5
    assert found.interior_containment < 0.9


@pytest.mark.parametrize("name", sorted(POSITIVES))
def test_lsh_finds_every_positive(name: str) -> None:
    index = SignatureIndex()
    index.add(1, signature(ORIGINAL))
    index.add(2, signature(text("same_unit_other")))
    index.add(3, signature(text("notice_reading_class")))
    assert 1 in index.candidates(signature(POSITIVES[name]()))
    # and the other way round: the variant stored first, the original arriving later
    reverse = SignatureIndex()
    reverse.add(7, signature(POSITIVES[name]()))
    assert reverse.candidates(signature(ORIGINAL)) == [7]


def test_compact_drops_editor_note_whitespace_and_punctuation() -> None:
    assert compact("编者按:本专栏…\n一是, 坚持“政治引领”。\n二是") == "一是坚持政治引领二是"


def test_signature_bytes_round_trip() -> None:
    data = signature(ORIGINAL)
    assert len(data) == 2 * NUM_PERM * 8  # numpy uint64 → bytes, whole text then first half
    full, _head = signature_parts(data)
    assert full.hashvalues.dtype == np.uint64
    assert full.jaccard(signature_parts(signature(ORIGINAL))[0]) == 1.0
    with pytest.raises(ValueError):
        signature_parts(data[:-8])


# --- decisions against the database ---------------------------------------------------------


def store_original(sessions: sessionmaker[Session], now: datetime) -> int:
    chain = Crawl(sessions, now)
    chain.run(article_item("orig", ORIGINAL, published_at=now - timedelta(days=3)))
    chain.close()
    with sessions() as s:
        return s.scalars(select(Article.id)).one()


@pytest.mark.parametrize("name", sorted(POSITIVES))
def test_positive_becomes_new_appearance_of_the_story(
    name: str, sessions: sessionmaker[Session], now: datetime
) -> None:
    article_id = store_original(sessions, now)
    chain = Crawl(
        sessions,
        now,
        source={"key": "other-site", "kind": "site_column", "url": "https://mz.example.gov.cn/"},
    )
    record = chain.decide(article_item("variant", POSITIVES[name](), published_at=now, source_key="other-site"))
    assert record.decision is not None
    assert (record.decision.kind, record.decision.article_id) == (NEW_APPEARANCE, article_id), record.decision.reason


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_negative_becomes_new_story(name: str, sessions: sessionmaker[Session], now: datetime) -> None:
    a, b = NEGATIVES[name]
    chain = Crawl(sessions, now)
    chain.run(article_item("first", text(a), published_at=now - timedelta(days=1)))
    record = chain.decide(article_item("second", text(b), published_at=now))
    assert record.decision is not None and record.decision.kind == NEW_STORY


def test_decisions_by_key(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    chain.run(article_item("k1", ORIGINAL, published_at=now))
    same = chain.decide(article_item("k1", ORIGINAL, published_at=now))
    edited = chain.decide(article_item("k1", text("small_edits"), published_at=now))
    gone = chain.decide(article_item("k1", "", published_at=now, state=STATE_DELETED))
    exact = chain.decide(article_item("k2", ORIGINAL, published_at=now))
    assert [r.decision.kind if r.decision else None for r in (same, edited, gone, exact)] == [
        UNCHANGED,
        EDIT,
        STATE_CHANGE,
        NEW_APPEARANCE,
    ]
    assert exact.decision is not None and exact.decision.reason == "same content hash"


def test_a_copy_of_text_the_story_replaced_is_the_same_story(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    # the truncated copy is stored first; the fuller original replaces the story's text
    chain.run(article_item("cut", truncated(ORIGINAL), published_at=now - timedelta(days=1)))
    chain.run(article_item("full", ORIGINAL, published_at=now - timedelta(days=2)))
    with sessions() as s:
        article_id, body = s.execute(select(Article.id, Article.body_text)).one()
    assert body == ORIGINAL
    # the truncated text again, under a third address: only an appearance still has its hash
    again = chain.decide(article_item("cut-again", truncated(ORIGINAL), published_at=now))
    assert again.decision is not None
    assert (again.decision.kind, again.decision.article_id, again.decision.reason) == (
        NEW_APPEARANCE,
        article_id,
        "same content hash",
    )


def test_state_page_of_unknown_article_is_dropped(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    record = chain.decide(article_item("unknown", "", published_at=now, state=STATE_DELETED))
    assert record.decision is None  # nothing to store
    assert chain.run(article_item("unknown", "", published_at=now, state=STATE_DELETED)) is Outcome.DROPPED


def test_story_stored_during_the_crawl_is_found_by_the_next_item(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    chain = Crawl(sessions, now)
    chain.run(article_item("s1", ORIGINAL, published_at=now))
    record = chain.decide(article_item("s2", truncated(ORIGINAL), published_at=now))
    assert record.decision is not None and record.decision.kind == NEW_APPEARANCE


def test_restart_rebuilds_index_from_stored_signatures_not_text(
    sessions: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    article_id = store_original(sessions, now)
    with sessions() as s:
        stored = s.get(Article, article_id)
        assert stored is not None
        assert stored.minhash_scheme == SIGNATURE_SCHEME and stored.minhash == signature(stored.body_text)
        stored_text = stored.body_text

    signed: list[str] = []

    def spy(body: str) -> bytes:
        signed.append(body)
        return signature(body)

    monkeypatch.setattr(pipeline.dedup, "signature", spy)
    monkeypatch.setattr(pipeline.similarity, "signature", spy)
    restarted = Deduplicator()  # a new crawl process
    record = precompute(_normalized(truncated(ORIGINAL), now))
    assert len(signed) == 1  # the incoming page
    with sessions() as s:
        restarted.decide(s, record)
    assert article_id in restarted.index.signatures and restarted.index.recomputed == 0
    assert record.decision is not None
    assert (record.decision.kind, record.decision.article_id) == (NEW_APPEARANCE, article_id)
    assert stored_text not in signed and len(signed) == 1  # the index came from articles.minhash alone


def _normalized(body: str, now: datetime) -> Record:
    from pipeline.normalize import normalize_item

    return normalize_item(article_item("restart", body, published_at=now))


def test_signatures_of_another_scheme_are_recomputed_once(sessions: sessionmaker[Session], now: datetime) -> None:
    article_id = store_original(sessions, now)
    with sessions.begin() as s:
        s.execute(update(Article).values(minhash=b"old", minhash_scheme="datasketch-1:mh128"))
    first = Deduplicator()
    with sessions() as s:
        first.index.catch_up(s)
    assert first.index.recomputed == 1 and article_id in first.index.signatures
    with sessions() as s:
        assert s.scalars(select(Article.minhash_scheme)).one() == SIGNATURE_SCHEME
    second = Deduplicator()
    with sessions() as s:
        second.index.catch_up(s)
    assert second.index.recomputed == 0


def _datasketch_sha1_signature(body: str) -> bytes:
    """A signature of the previous scheme (datasketch's default SHA-1 hash of each shingle's UTF-8)."""
    seq = shingle_list(body)
    parts = []
    for items in (set(seq), set(seq[: max(1, len(seq) // 2)])):
        m = MinHash(num_perm=NUM_PERM, seed=1, scheme="affine64")
        m.update_batch([s.encode("utf-8") for s in items])
        parts.append(m.hashvalues)
    return np.concatenate(parts).astype("<u8").tobytes()


def test_signatures_of_the_previous_datasketch_scheme_are_upgraded_on_the_next_crawl(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    article_id = store_original(sessions, now)
    old = _datasketch_sha1_signature(ORIGINAL)
    assert old != signature(ORIGINAL)
    stale = SignatureIndex()
    stale.add(article_id, old)
    assert stale.candidates(signature(truncated(ORIGINAL))) == []  # old values never meet new ones
    with sessions.begin() as s:
        s.execute(
            update(Article).values(minhash=old, minhash_scheme="datasketch-2:affine64:mh128:char3:seed1:full+head")
        )
    chain = Crawl(sessions, now)  # the next crawl
    record = chain.decide(article_item("cut", truncated(ORIGINAL), published_at=now, source_key="other-site"))
    assert chain.ingest.deduplicator.index.recomputed == 1  # at its first decision
    with sessions() as s:
        stored = s.get(Article, article_id)
        assert stored is not None
        assert (stored.minhash_scheme, stored.minhash) == (SIGNATURE_SCHEME, signature(ORIGINAL))
    assert record.decision is not None
    assert (record.decision.kind, record.decision.article_id) == (NEW_APPEARANCE, article_id)
    chain.close()
