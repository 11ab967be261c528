"""Query parsing and search on both databases: recall, phrases, operators, filters, ranking,
snippets, and hostile input that must never become anything but a result or a QueryError."""

from __future__ import annotations

import random
import re
from datetime import date, datetime
from functools import partial
from typing import TYPE_CHECKING

import pytest

from archive.search import Filters, SearchResult, patterns_for, search, snippet
from archive.search_syntax import And, Not, Or, QueryError, Term, parse_query, to_fts5, tsquery_phrase
from pipeline.tagging.attribution import excerpt_text
from tests.test_archive_corpus import DOCS, SHANGHAI, build_corpus

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session, sessionmaker

HOSTILE = [
    '"',
    '""',
    '"党建',
    '党建"工作',
    "AND OR NOT",
    "AND",
    "OR 党建",
    "党建 OR",
    "NOT",
    "NOT 党建",
    "-党建",
    "NEAR(党建 工作)",
    "NEAR(",
    "*",
    "党*",
    "title:x",
    "title:党建",
    "body:(a OR b)",
    "'; DROP TABLE articles; --",
    "1' OR '1'='1",
    "党建\x00工作",
    "\x00",
    "\x01\x02\x1b[31m",
    "党" * 5000,
    "a " * 2600,
    "(((((((((((((((((((((((((((((((((((党建",
    ")))))",
    "((党建) OR (",
    "^党建",
    "党建 + 工作",
    "{title body}: 党建",
    "- - -",
    "--党建",
    "!党建 & 工作 | 教育",
    "'党建' <-> '工作'",
    "党建:*",
    "\\",
    "%_%",
    "\ud800党建",
    "“党建工作",
    "𠀀𠀁",
    "😀 党建",
    "NOT NOT NOT NOT 党建",
    "(" * 40 + "党建" + ")" * 40,
    " ".join(["党建"] * 40),
    "ＡＩ",
]


@pytest.fixture
def db(sessions: sessionmaker[Session], now: datetime) -> Iterator[Session]:
    with sessions() as session, session.begin():
        build_corpus(session, now)
    with sessions() as session:
        yield session


def guids(result: SearchResult) -> list[str]:
    return [hit.guid for hit in result.hits]


def run(session: Session, q: str, filters: Filters | None = None, **kw: int) -> SearchResult:
    return search(session, q, filters or Filters(), tz=SHANGHAI, **kw)


# --- parsing (pure) ---------------------------------------------------------------------


def test_parse_terms_phrases_and_operators() -> None:
    query = parse_query('人工智能 "学习 贯彻" OR 教育 -财政')
    assert isinstance(query.root, Or)
    left, right = query.root.children  # AND binds tighter than OR
    assert isinstance(left, And)
    first = left.children[0]
    assert isinstance(first, Term) and first.tokens == ("人工", "工智", "智能")
    assert isinstance(right, And)
    assert isinstance(right.children[1], Not)
    assert [t.raw for t in query.terms(positive=True)] == ["人工智能", "学习 贯彻", "教育"]


def test_parse_explicit_and_parentheses_and_chinese_quotes() -> None:
    query = parse_query("(党建 OR 教育) AND “全会精神”")
    assert isinstance(query.root, And)
    assert isinstance(query.root.children[0], Or)
    phrase = query.root.children[1]
    assert isinstance(phrase, Term) and phrase.quoted and phrase.tokens == ("全会", "会精", "精神")


def test_fts5_and_tsquery_quote_every_token() -> None:
    query = parse_query('title:x 党建 -"财政"')
    assert query.root is not None
    assert to_fts5(query.root) == '(("title x" AND "党建") NOT ("财政"))'
    assert tsquery_phrase(Term(raw="x", runs=(("a'b",),))) == "('a''b')"
    single = parse_query("党")
    assert single.root is not None and to_fts5(single.root) is None  # a lone character is scanned


def test_empty_query_is_browse_and_junk_is_a_query_error() -> None:
    assert parse_query("   ").is_empty
    for q in ("*", "AND OR NOT", "-党建", "x" * 501):
        with pytest.raises(QueryError) as info:
            parse_query(q)
        assert info.value.message


@pytest.mark.parametrize("q", HOSTILE)
def test_parse_hostile_input_never_raises_anything_else(q: str) -> None:
    try:
        parse_query(q)
    except QueryError as exc:
        assert exc.message


# --- search -----------------------------------------------------------------------------


def test_two_character_term_finds_longer_words(db: Session) -> None:
    assert set(guids(run(db, "党建"))) == {"guid-edu", "guid-party"}


def test_every_substring_of_two_or_more_han_characters_finds_its_document(db: Session) -> None:
    rng = random.Random(20261126)
    for doc in DOCS:
        runs = [r for r in re.findall(r"[\u4e00-\u9fff]+", doc.body) if len(r) >= 2]
        for _ in range(8):
            text = rng.choice(runs)
            length = rng.randint(2, min(8, len(text)))
            start = rng.randint(0, len(text) - length)
            needle = text[start : start + length]
            assert f"guid-{doc.key}" in guids(run(db, f'"{needle}"', per_page=100)), needle


def test_phrase_requires_adjacency(db: Session) -> None:
    assert guids(run(db, '"人工智能"')) == ["guid-edu"]
    assert guids(run(db, '"智能人工"')) == []
    # Both words occur in the edu text, but never as this phrase.
    assert guids(run(db, '"教育工作"')) == []
    assert "guid-edu" in guids(run(db, "教育 工作"))


def test_or_and_not(db: Session) -> None:
    assert set(guids(run(db, "财政 OR 科技"))) == {"guid-fin", "guid-sci"}
    assert set(guids(run(db, "全会 -党建"))) == {"guid-fin", "guid-sci", "guid-notice"}
    assert set(guids(run(db, "全会 NOT (党建 OR 财政)"))) == {"guid-sci", "guid-notice"}
    assert set(guids(run(db, "全会 AND 科技"))) == {"guid-sci"}


def test_latin_words_and_numbers(db: Session) -> None:
    assert guids(run(db, "ai")) == ["guid-sci"]
    assert guids(run(db, "2026年")) == ["guid-sci"]


def test_single_han_character_uses_a_scan(db: Session) -> None:
    assert set(guids(run(db, "粮"))) == {"guid-fin"}
    assert set(guids(run(db, "粮 OR 堡"))) == {"guid-fin", "guid-party"}
    assert set(guids(run(db, "全会 -粮"))) == {"guid-edu", "guid-party", "guid-sci", "guid-notice"}


def test_title_matches_rank_first(db: Session) -> None:
    result = run(db, "党建")
    assert guids(result)[0] == "guid-party"
    assert result.hits[0].score is not None and result.hits[1].score is not None
    assert result.hits[0].score > result.hits[1].score


def test_snippets_highlight_and_escape(db: Session) -> None:
    hit = run(db, "党建")
    edu = next(h for h in hit.hits if h.guid == "guid-edu")
    assert "<mark>党建</mark>" in edu.snippet_html
    assert "<mark>党建</mark>" in run(db, "党建").hits[0].title_html
    notice = run(db, "报送").hits[0]
    assert "<script>" not in notice.snippet_html and "&lt;script&gt;" in notice.snippet_html
    assert "<mark>AI</mark>" in run(db, "ai").hits[0].snippet_html


def test_a_snippet_with_nothing_matched_starts_with_the_text_not_the_byline() -> None:
    body = "市教育局党组书记、局长 王立新\n全会强调，要办好人民满意的教育。\n我们将扎实推进教育评价改革。"
    lead = partial(excerpt_text, title="办好人民满意的教育")
    assert snippet(body, [], lead=lead).text.startswith("全会强调")
    named = snippet(body, patterns_for(parse_query("王立新")), lead=lead)  # a match in the byline is shown there
    assert named.text.startswith("市教育局党组书记、局长 王立新") and named.spans


def test_filters(db: Session) -> None:
    assert guids(run(db, "", Filters(unit="机关工委"))) == ["guid-party", "guid-notice"]
    assert guids(run(db, "", Filters(unit="市科技局"))) == ["guid-sci"]
    assert guids(run(db, "", Filters(unit="99999999999999999999"))) == []
    assert guids(run(db, "", Filters(unit="不存在的单位"))) == []
    assert guids(run(db, "全会", Filters(author="林秀英"))) == ["guid-fin"]
    assert set(guids(run(db, "", Filters(topic="党的建设")))) == {"guid-edu", "guid-party"}
    assert guids(run(db, "", Filters(column="工作通知"))) == ["guid-notice"]
    assert guids(run(db, "", Filters(source_kind="site_column"))) == ["guid-edu"]
    assert guids(run(db, "", Filters(state="deleted"))) == ["guid-fin"]
    assert "guid-fin" not in guids(run(db, "", Filters(state="live")))
    # 2026-11-20 23:30 in Shanghai is 15:30 UTC: it belongs to the 20th, not the 21st.
    assert guids(run(db, "", Filters(date_from=date(2026, 11, 20), date_to=date(2026, 11, 20)))) == ["guid-party"]
    assert guids(run(db, "", Filters(date_from=date(2026, 11, 21), date_to=date(2026, 11, 23)))) == []
    assert len(run(db, "", Filters(date_from=date.min, date_to=date.max)).hits) == len(DOCS)
    with pytest.raises(QueryError):
        run(db, "", Filters(state="bogus"))


def test_browse_newest_first_with_pagination(db: Session) -> None:
    first = run(db, "", per_page=2)
    assert first.total == len(DOCS) and first.pages == 3
    assert guids(first) == ["guid-edu", "guid-party"]
    assert guids(run(db, "", page=3, per_page=2)) == ["guid-notice"]
    assert guids(run(db, "", page=99, per_page=2)) == []


def test_search_hostile_input_returns_a_result_or_query_error(db: Session) -> None:
    assert len(HOSTILE) >= 30
    for q in HOSTILE:
        try:
            result = run(db, q)
        except QueryError as exc:
            assert exc.message
        else:
            assert result.total >= 0
    assert run(db, "党建").total == 2  # and the tables are still there
