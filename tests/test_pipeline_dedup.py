"""Deduplicate stage: the evaluation set (reposts merged, template traps and same-topic articles
kept apart), decisions by key / hash / near duplicate, and the signature round trip through the DB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from datasketch import MinHash
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

import pipeline.dedup
import pipeline.similarity
from crawler.items import STATE_DELETED
from pipeline.corpus.models import Article
from pipeline.dedup import Deduplicator
from pipeline.identity import SHORT_BODY_CHARS, Copy, body_chars, same_story, title_key, titles_agree
from pipeline.locks import DedupLocks
from pipeline.normalize import normalize_item
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
    assert (again.decision.kind, again.decision.article_id) == (NEW_APPEARANCE, article_id)
    # a first half is a short body: the titles agree as well
    assert again.decision.reason == "same content hash, same title"


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

    def spy(body: str, folded: str | None = None) -> bytes:
        signed.append(body)
        return signature(body, folded)

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


def test_a_signature_of_another_scheme_stored_after_the_first_build_is_compared(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    """After its first build the index catches up once per page, under the page's locks on
    PostgreSQL, where it must not commit: an outdated signature met then is recomputed in memory
    (stored by the next build); on SQLite it is stored at once."""
    engine = sessions.kw["bind"]
    dedup = Deduplicator(DedupLocks(engine.dialect.name))  # as a batched ingest has it

    def decide(key: str, body: str) -> Record:
        record = precompute(normalize_item(article_item(key, body, published_at=now, source_key="other-site")))
        with sessions() as s:
            dedup.decide(s, record)
            s.commit()
        return record

    decide("unrelated", text("same_unit_other"))  # the first build
    article_id = store_original(sessions, now)  # another crawl, with an older release
    old = _datasketch_sha1_signature(ORIGINAL)
    with sessions.begin() as s:
        s.execute(
            update(Article).values(minhash=old, minhash_scheme="datasketch-2:affine64:mh128:char3:seed1:full+head")
        )
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        record = decide("cut", truncated(ORIGINAL))
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert record.decision is not None
    assert (record.decision.kind, record.decision.article_id) == (NEW_APPEARANCE, article_id)
    assert dedup.index.recomputed == 1
    assert sum("minhash_scheme" in s and "articles.id >" in s for s in statements) == 1  # one catch-up
    with sessions() as s:
        stored = s.scalars(select(Article.minhash_scheme).where(Article.id == article_id)).one()
    assert (stored == SIGNATURE_SCHEME) == (engine.dialect.name == "sqlite")


def test_after_the_first_build_a_decision_reads_the_database_in_one_statement(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    """The catch-up, the appearance with the page's key and the stories with its content hash come
    in one statement (after the page's locks on PostgreSQL): a round trip each was most of what the
    stage cost there. The decisions are those of the separate lookups."""
    engine = sessions.kw["bind"]
    dedup = Deduplicator(DedupLocks(engine.dialect.name))
    article_id = store_original(sessions, now)

    def decide(key: str, body: str) -> tuple[Record, list[str]]:
        record = precompute(normalize_item(article_item(key, body, published_at=now, source_key="other-site")))
        statements: list[str] = []
        listener = lambda *args: statements.append(" ".join(args[2].split()))  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            with sessions() as s:
                dedup.decide(s, record)
                s.commit()
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return record, statements

    decide("first", text("same_unit_other"))  # the first build
    expected = 2 if engine.dialect.name == "postgresql" else 1  # (the page's locks, then) the lookups
    same_text, said = decide("elsewhere", ORIGINAL)
    assert same_text.decision is not None and (same_text.decision.kind, same_text.decision.article_id) == (
        NEW_APPEARANCE,
        article_id,
    )
    assert len(said) == expected, said
    known, said = decide("orig", ORIGINAL)  # the stored page's own key, same content
    assert known.decision is not None and (known.decision.kind, known.decision.article_id) == (UNCHANGED, article_id)
    assert len(said) == expected, said
    new, said = decide("unrelated", text("notice_lecture"))
    assert new.decision is not None and new.decision.kind == NEW_STORY
    assert len(said) == expected, said


# --- short bodies: different notices that share a formula stay apart (issue 21, point 7) --------

FORMULA = text("notice_attachment_formula")  # ~200 characters around an attachment, shared word for word
BRIEF = text("brief_news")  # a short news item, reposted with other titles
NOTICE_TITLES = [
    "关于2026年度市直机关优秀共产党员拟表彰对象的公示",
    "关于2026年度市直机关优秀党务工作者拟表彰对象的公示",
    "关于2026年度市直机关先进基层党组织拟表彰对象的公示",
    "关于第一批市直机关模范机关创建单位的公示",
    "关于第二批市直机关模范机关创建单位的公示",
    "关于市直机关党建工作示范点拟命名名单的公示",
    "关于市直机关“四强”党支部拟命名名单的公示",
    "关于市直机关青年理论学习标兵拟推荐人选的公示",
    "关于市直机关2026年度发展党员对象的公示",
    "关于市直机关党务干部培训优秀学员的公示",
]
BRIEF_TITLE = "市直机关工委举办学习贯彻党的二十届四中全会精神专题宣讲会（第一场）"
_BRIEF_HALF_WIDTH = "市直机关工委举办学习贯彻党的二十届四中全会精神专题宣讲会(第一场)"
# How reposts really retitle a story: each is the same story as BRIEF_TITLE.
REPOST_TITLES = {
    "column prefix ｜": f"学习贯彻党的二十届四中全会精神｜{BRIEF_TITLE}",
    "column prefix 丨": f"学习贯彻四中全会精神丨{BRIEF_TITLE}",
    "【转载】": f"【转载】{BRIEF_TITLE}",
    "〔来源〕": f"〔市直机关工委〕{BRIEF_TITLE}",
    "unit prefix": f"市直机关工委：{BRIEF_TITLE.removeprefix('市直机关工委')}",
    "trailing site name": f"{BRIEF_TITLE}_青川市人民政府门户网站",
    "trailing site name after a dash": f"{_BRIEF_HALF_WIDTH} - 青川机关党建网",
    "punctuation width": _BRIEF_HALF_WIDTH,
}


def test_short_body_threshold_is_between_the_formula_and_a_study_article() -> None:
    assert body_chars(FORMULA) < SHORT_BODY_CHARS <= body_chars(ORIGINAL)
    assert body_chars(BRIEF) < SHORT_BODY_CHARS  # the reposts below are decided by their titles


@pytest.mark.parametrize("name", sorted(REPOST_TITLES))
def test_titles_of_a_repost_agree(name: str) -> None:
    assert titles_agree(REPOST_TITLES[name], BRIEF_TITLE)
    assert titles_agree(BRIEF_TITLE, REPOST_TITLES[name])


def test_titles_of_a_notice_family_disagree() -> None:
    for i, a in enumerate(NOTICE_TITLES):
        for b in NOTICE_TITLES[i + 1 :]:
            assert not titles_agree(a, b), (a, b)
    # one number apart is another notice; a generic word inside a title proves nothing
    assert not titles_agree("关于第一批市直机关模范机关创建单位的公示", "关于第二批市直机关模范机关创建单位的公示")
    assert not titles_agree("公示", "关于第二批市直机关模范机关创建单位的公示")
    # the same column prefix on two different titles does not make them one
    assert not titles_agree(f"学习贯彻四中全会精神｜{NOTICE_TITLES[0]}", f"学习贯彻四中全会精神｜{NOTICE_TITLES[5]}")


def test_title_key_strips_what_reposts_add() -> None:
    key = title_key(BRIEF_TITLE)
    assert {title_key(t) for name, t in REPOST_TITLES.items() if name != "unit prefix"} == {key}
    assert title_key("「三个务必」的时代内涵") == "三个务必的时代内涵"  # a quotation is not a mark


def _copy(title: str, body: str = FORMULA, **kw: Any) -> Copy:
    return Copy(titles=(title,), body_text=body, **kw)


def test_same_story_rule() -> None:
    short = body_chars(FORMULA)
    a, b = NOTICE_TITLES[0], NOTICE_TITLES[1]
    assert same_story(_copy(a), _copy(b), short) is None
    assert same_story(_copy(a), _copy(f"【转载】{a}"), short) == "same title"
    assert same_story(_copy(a), _copy(b), SHORT_BODY_CHARS) == "long shared body"  # units retitle reposts
    file = '<p><a href="https://jgdw.example.gov.cn/files/P020261120_mingdan.xlsx">附件：名单</a></p>'
    other = '<p><a href="https://jgdw.example.gov.cn/files/P020261121_mingdan.xlsx">附件：名单</a></p>'
    assert same_story(_copy(a, body_html=file), _copy(b, body_html=file), short) == "same attachment"
    assert same_story(_copy(a, body_html=file), _copy(b, body_html=other), short) is None
    origin = "https://jgdw.example.gov.cn/art/1.html"
    assert (
        same_story(_copy(a, cites=frozenset({origin})), _copy(b, addresses=frozenset({origin})), short)
        == "names the other as its origin"
    )
    # a 转载 / 来源 note counts when it names where the other was published; a bare mark does not
    mz = _copy(b, names=frozenset({"青川市民政局"}), addresses=frozenset({"https://mz.example.gov.cn/art/9.html"}))
    named = "转载 note names the other"
    assert same_story(_copy(a, body=f"转自：青川市民政局\n{FORMULA}"), mz, short) == named
    assert same_story(_copy(a, body=f"{FORMULA}\n来源：mz.example.gov.cn"), mz, short) == named
    assert same_story(_copy(a, body=f"转自：青川市财政局\n{FORMULA}"), mz, short) is None
    assert same_story(_copy(f"【转载】{a}"), mz, short) is None
    assert same_story(_copy(a, body=f"{FORMULA}\n未经许可不得转载"), mz, short) is None
    # one office's notices all name it: that is their publisher, not the other notice's
    jg = {"names": frozenset({"市直机关工委"}), "addresses": frozenset({"https://jgdw.example.gov.cn/art/1.html"})}
    signed = f"{FORMULA}\n来源：市直机关工委"
    assert same_story(_copy(a, body=signed, **jg), _copy(b, body=signed, **jg), short) is None


def _ingest_notices(sessions: sessionmaker[Session], now: datetime, bodies: list[str]) -> None:
    chain = Crawl(sessions, now)
    for i, (title, body) in enumerate(zip(NOTICE_TITLES, bodies, strict=True)):
        published = now - timedelta(days=10 - i)
        assert chain.run(article_item(f"gs{i}", body, title=title, published_at=published)) is Outcome.STORED
    chain.close()


def _stories(sessions: sessionmaker[Session]) -> dict[str, list[tuple[str, bool]]]:
    """Each story's title → its appearances' (URL, is original), by publish time."""
    with sessions() as s:
        out: dict[str, list[tuple[str, bool]]] = {}
        for article in s.scalars(select(Article).order_by(Article.id)):
            places = sorted(article.appearances, key=lambda a: (a.published_at, a.id))
            out[article.title] = [(a.url, a.is_original) for a in places]
        return out


def test_ten_notices_with_one_formula_stay_ten_stories_and_reposts_find_their_own(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    _ingest_notices(sessions, now, [FORMULA] * len(NOTICE_TITLES))
    other = Crawl(
        sessions, now, source={"key": "other-site", "kind": "site_column", "url": "https://mz.example.gov.cn/"}
    )
    # reposts of the second and the seventh notice (the first notice holds the same hash, and is not theirs)
    for key, title in (
        ("zz1", f"【转载】{NOTICE_TITLES[1]}"),
        ("zz6", f"{NOTICE_TITLES[6]}_青川市民政局"),
    ):
        assert other.run(article_item(key, FORMULA, title=title, published_at=now, source_key="other-site")) is (
            Outcome.STORED
        )
    # the short news item: a repost stored before its original, then the original, then more reposts
    late = now - timedelta(hours=2)
    reposts = sorted(REPOST_TITLES.items())
    other.run(article_item("brief-r0", BRIEF, title=reposts[0][1], published_at=late, source_key="other-site"))
    other.run(article_item("brief", BRIEF, title=BRIEF_TITLE, published_at=now - timedelta(days=1)))
    for i, (_name, title) in enumerate(reposts[1:], start=1):
        other.run(article_item(f"brief-r{i}", BRIEF, title=title, published_at=late, source_key="other-site"))
    other.close()

    stories = _stories(sessions)
    assert len(stories) == len(NOTICE_TITLES) + 1
    for i, title in enumerate(NOTICE_TITLES):
        expected = [(f"https://czj.example.gov.cn/art/gs{i}.html", True)]
        if i in (1, 6):
            expected.append((f"https://czj.example.gov.cn/art/zz{i}.html", False))
        assert stories[title] == expected, title
    # the story keeps the title of the page seen first; its 首发 is the original, published first
    (brief,) = [places for title, places in stories.items() if title not in NOTICE_TITLES]
    assert brief[0] == ("https://czj.example.gov.cn/art/brief.html", True)
    assert len(brief) == len(REPOST_TITLES) + 1 and not any(original for _, original in brief[1:])


def test_near_duplicate_notices_with_a_short_body_stay_apart(sessions: sessionmaker[Session], now: datetime) -> None:
    # The same formula with each notice's own dates: not one hash, but near duplicates of each other.
    bodies = [FORMULA.replace("5个工作日", f"5个工作日（11月{10 + i}日至{16 + i}日）") for i in range(10)]
    assert overlap(bodies[0], bodies[1]) is not None and overlap(bodies[0], bodies[1]).is_duplicate  # type: ignore[union-attr]
    _ingest_notices(sessions, now, bodies)
    assert sorted(_stories(sessions)) == sorted(NOTICE_TITLES)
    # and a repost of one of them with a near-identical body still joins it
    chain = Crawl(sessions, now)
    record = chain.decide(
        article_item(
            "zz4",
            bodies[4] + "\n来源：市直机关工委",
            title=f"学习贯彻四中全会精神｜{NOTICE_TITLES[4]}",
            published_at=now,
        )
    )
    assert record.decision is not None and record.decision.kind == NEW_APPEARANCE
    with sessions() as s:
        assert s.get(Article, record.decision.article_id).title == NOTICE_TITLES[4]  # type: ignore[union-attr]


@pytest.mark.parametrize("recent_max", [0, 16, 10_000])
def test_the_sorted_index_finds_what_a_scan_of_every_stored_band_finds(recent_max: int) -> None:
    """The index's sorted bands (merged whole after a bulk load, by insertion after a few adds, or
    not yet) answer as a comparison with every stored band key would: parts that share a band key
    with the query, whole or head, and no other."""
    rng = np.random.default_rng(11)
    bands, rows = pipeline.similarity.LSH_BANDS
    stored: list[tuple[int, bytes]] = []
    for article_id in range(1, 400):
        values = rng.integers(0, 2**63, size=2 * NUM_PERM, dtype=np.uint64)
        if article_id % 7 == 0:  # shares one band of rows with an earlier article: a candidate pair
            # whole or head of this one with whole or head of the earlier one
            earlier = np.frombuffer(stored[int(rng.integers(len(stored)))][1], dtype="<u8")
            band = int(rng.integers(bands))
            into, taken = (band * rows + NUM_PERM * int(rng.integers(2)) for _ in range(2))
            values[into : into + rows] = earlier[taken : taken + rows]
        stored.append((article_id, values.astype("<u8").tobytes()))
    index = SignatureIndex()
    index.RECENT_MAX = recent_max

    parts: list[np.ndarray] = []  # the band keys of every stored part, and their articles
    owners: list[int] = []

    def store(article_id: int, data: bytes) -> None:
        index.add(article_id, data)
        for part in pipeline.similarity.signature_halves(data):
            parts.append(pipeline.similarity.band_keys(part))
            owners.append(article_id)

    hits = 0
    for n, (article_id, data) in enumerate(stored):
        expected: set[int] = set()
        if parts:
            table = np.stack(parts)
            for part in pipeline.similarity.signature_halves(data):
                mask = (table == pipeline.similarity.band_keys(part)).any(axis=1)
                expected.update(np.asarray(owners)[mask].tolist())
        assert index.candidates(data) == sorted(expected), article_id
        hits += bool(expected)
        store(article_id, data)
        if n == 200:  # a bulk load: many at once before the next query
            for extra_id in range(1000, 1300):
                store(extra_id, rng.integers(0, 2**63, size=2 * NUM_PERM, dtype=np.uint64).astype("<u8").tobytes())
    assert hits >= 50  # the planted pairs: the comparison is not vacuous
    assert len(index) == 399 + 300


def test_a_bulk_load_indexes_as_one_signature_at_a_time() -> None:
    """`add_many` (a crawl's first catch-up) gives the index that `add` gives, signature by signature."""
    rng = np.random.default_rng(12)
    bands, rows = pipeline.similarity.LSH_BANDS
    stored = [
        (i, rng.integers(0, 2**63, size=2 * NUM_PERM, dtype=np.uint64).astype("<u8").tobytes()) for i in range(1, 301)
    ]
    one, bulk = SignatureIndex(), SignatureIndex()
    for article_id, data in stored:
        one.add(article_id, data)
    bulk.add_many(stored)
    assert len(bulk) == len(one) == 300 and 150 in bulk
    for n in range(40):
        probe = rng.integers(0, 2**63, size=2 * NUM_PERM, dtype=np.uint64)
        source = np.frombuffer(stored[n * 7][1], dtype="<u8")
        half, band = n % 2, n % bands  # share one band of the whole text or of the head
        at = half * NUM_PERM + band * rows
        probe[at : at + rows] = source[at : at + rows]
        data = probe.astype("<u8").tobytes()
        assert bulk.candidates(data) == one.candidates(data)
        assert stored[n * 7][0] in bulk.candidates(data)


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("2", "2")])
def test_signatures_run_numpy_on_one_thread_unless_the_environment_says_otherwise(
    given: str | None, expected: str
) -> None:
    """A fresh process: after a signature, numpy's OpenBLAS runs no threads of its own (they spun
    for nothing, taking CPU from the crawl), and a setting the operator gave is kept."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import json, os\n"
        "from pipeline.similarity import signature\n"
        "signature('学习贯彻党的二十届四中全会精神，推动机关党建高质量发展。' * 5)\n"
        "print(json.dumps({'setting': os.environ.get('OPENBLAS_NUM_THREADS'),"
        " 'threads': len(os.listdir('/proc/self/task'))}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, env=env, check=True)
    result = json.loads(done.stdout)
    assert result["setting"] == expected
    if given is None:
        assert result["threads"] == 1


def test_band_lock_keys_meet_exactly_where_the_lsh_bands_do() -> None:
    from pipeline.locks import band_lock_keys
    from pipeline.similarity import LSH_BANDS, NUM_PERM

    bands, rows = LSH_BANDS
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2**63, 2 * NUM_PERM, dtype=np.uint64)
    b = rng.integers(0, 2**63, 2 * NUM_PERM, dtype=np.uint64)
    b[3 * rows : 4 * rows] = a[3 * rows : 4 * rows]  # the whole texts agree in band 3 only
    keys_a = band_lock_keys(a.astype("<u8").tobytes())
    keys_b = band_lock_keys(b.astype("<u8").tobytes())
    assert len(keys_a) == len(set(keys_a)) == 2 * bands
    assert set(keys_a) & set(keys_b) == {keys_a[3]} == {keys_b[3]}
    assert all(-(2**63) <= key < 2**63 for key in keys_a)
    # The index matches a whole text's band against a head's band of the same index: one lock. The same
    # values in another band are another lock.
    c = rng.integers(0, 2**63, 2 * NUM_PERM, dtype=np.uint64)
    c[NUM_PERM + 3 * rows : NUM_PERM + 4 * rows] = a[3 * rows : 4 * rows]
    c[4 * rows : 5 * rows] = a[3 * rows : 4 * rows]
    keys_c = band_lock_keys(c.astype("<u8").tobytes())
    assert set(keys_a) & set(keys_c) == {keys_a[3]} == {keys_c[bands + 3]}


def test_dropping_marks_deletes_exactly_the_table_s_characters() -> None:
    from pipeline.similarity import _DROP, _drop_marks

    every_bmp_character = "".join(map(chr, range(0x10000)))  # lone surrogates included
    assert _drop_marks(every_bmp_character) == every_bmp_character.translate(_DROP)
    astral = "学习𠀀贯彻🙂，四中全会\U000e0001精神 𝟙"
    assert _drop_marks(astral) == astral.translate(_DROP) == "学习𠀀贯彻四中全会精神𝟙"
    assert _drop_marks("") == ""
