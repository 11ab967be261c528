"""Text fidelity (DESIGN.md): stored text keeps the page's own characters; only matching folds.

The fold itself, the stored text and its hash (the same hash as before stored text stopped being
folded), putting the page's characters back into text stored folded, and a stored story as feeds,
search and exports show it. The migration that repairs stored rows is tested in
tests/test_migration_text_fidelity.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from archive.export import export
from archive.search import Filters, search, snippet_html
from archive.search_syntax import highlight_pattern, parse_query
from feeds.publish import publish_feeds
from pipeline.corpus.models import Article
from pipeline.corpus.textsplit import fold_for_matching, fold_with_offsets, split_runs, split_text
from pipeline.normalize import content_hash, normalize_item, normalize_line, normalize_text, restore_original_characters
from pipeline.similarity import compact, signature
from tests.test_feeds_factory import make_config
from tests.test_pipeline_support import Crawl, article_item

if TYPE_CHECKING:
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from sqlalchemy.orm import Session, sessionmaker

# A page as a unit's site writes it: full-width punctuation, letters, digits and spaces, ㈠ and ①.
PAGE = (
    "\u3000\u3000市科学技术局党组书记、局长\u3000叶其炎\n"
    "编者按：为深入学习宣传贯彻党的二十届四中全会精神，引导市直机关广大党员干部深刻领会全会精神"
    "（以下简称“全会精神”）；即日起开设专栏！\n"
    "㈠２０２５年，ＡＩ赋能科技创新？①\u3000学习心得"
)
STORED = (  # what normalize_text makes of it now
    "市科学技术局党组书记、局长\u3000叶其炎\n"
    "编者按：为深入学习宣传贯彻党的二十届四中全会精神，引导市直机关广大党员干部深刻领会全会精神"
    "（以下简称“全会精神”）；即日起开设专栏！\n"
    "㈠２０２５年，ＡＩ赋能科技创新？①\u3000学习心得"
)
FOLDED = (  # what normalize_text stored before (NFKC)
    "市科学技术局党组书记、局长 叶其炎\n"
    "编者按:为深入学习宣传贯彻党的二十届四中全会精神,引导市直机关广大党员干部深刻领会全会精神"
    "(以下简称“全会精神”);即日起开设专栏!\n"
    "(一)2025年,AI赋能科技创新?1 学习心得"
)
# sha256 of PAGE as the code before this change stored it (pipeline/normalize.py at 1927762).
PAGE_HASH = "d81e73b5b685b60c3e0622a589118b44a6373782fd8fb568bfd83f6c3ee6173d"
PAGE_MARKS = ("，", "：", "（", "）", "；", "、", "“", "”", "！", "？", "\u3000", "２０２５", "ＡＩ", "㈠", "①")

# Characters that make folding interesting: full-width forms, compatibility characters, combining
# marks (NFKC composes them), Hangul jamo, half-width katakana with separate voiced marks,
# zero-width and control characters, assorted spaces, characters outside the BMP.
TRICKY = (
    "党建工作学习，。：；（）！？“”、《》　 \t\n\r\u00a0\u2028\u2029\u200b\u200d\ufeff\u00ad\x07\x85"
    "ＡＢＣａｂｃ０１２９％＆＂－㈠㈩①⑩⒈㊀⼀﨑ﬁ™½²ｶﾞﾊﾟ\u3099\u309a"
    "e\u0301\u0308\u0323\u0327\u1100\u1161\u11a8가é¨ǅΩ𝐀𝟘🀄"
)


def random_texts(count: int, seed: int = 17) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(TRICKY, k=rng.randint(0, 24))) for _ in range(count)]


# --- the code before this change, to pin what must not move --------------------------------------


def old_normalize_text(text: str) -> str:
    """pipeline.normalize.normalize_text at 1927762: NFKC first, then the cleaning."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    lines = (normalize_line(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def old_content_hash(page_text: str) -> str:
    """pipeline.normalize at 1927762: sha256 of the normalized (folded) text without whitespace."""
    return hashlib.sha256(re.sub(r"\s+", "", old_normalize_text(page_text)).encode("utf-8")).hexdigest()


# --- the fold -------------------------------------------------------------------------------------


def test_fold_for_matching_is_nfkc() -> None:
    for text in [PAGE, STORED, FOLDED, *random_texts(3000)]:
        assert fold_for_matching(text) == unicodedata.normalize("NFKC", text), ascii(text)


def test_fold_with_offsets_maps_every_folded_character_to_its_original() -> None:
    text = "第㈠条①ＡＢ，党"
    folded, starts, ends = fold_with_offsets(text)
    assert folded == "第(一)条1AB,党"
    assert [text[starts[k] : ends[k]] for k in range(len(folded))] == [
        "第", "㈠", "㈠", "㈠", "条", "①", "Ａ", "Ｂ", "，", "党",
    ]  # fmt: skip
    for text in random_texts(500):
        folded, starts, ends = fold_with_offsets(text)
        assert len(starts) == len(ends) == len(folded)
        assert all(0 <= s < e <= len(text) for s, e in zip(starts, ends, strict=True))


def test_the_index_form_is_the_query_splitters_runs_flattened() -> None:
    # Documents are split by `split_text`, queries by `split_runs`: a query finds a document only
    # while the two agree token for token.
    fixed = ["", "党", "党建", "学习贯彻四中全会精神", "第㈠条①ＡＢ，党", "AI赋能 2025年 ai", "中a文b", "é́党"]
    for text in fixed + list(random_texts(500)):
        assert split_text(text) == " ".join(token for run in split_runs(text) for token in run), text
    assert split_text("学习贯彻，AI赋能") == "学习 习贯 贯彻 ai 赋能"


def test_index_and_shingles_fold_and_ignore_width() -> None:
    assert split_text(STORED) == split_text(FOLDED)
    assert "2025" in split_text(STORED).split() and "ai" in split_text(STORED).split()
    assert compact(STORED) == compact(FOLDED)
    assert signature(STORED) == signature(FOLDED)  # stored signatures stay comparable


# --- stored text and its hash ---------------------------------------------------------------------


def test_stored_text_keeps_the_page_characters(now: datetime) -> None:
    assert normalize_text(PAGE) == STORED
    record = normalize_item(article_item("fidelity", PAGE, published_at=now))
    assert record.body_text == STORED
    for mark in PAGE_MARKS:
        assert mark in record.body_text, mark


def test_content_hash_is_the_hash_stored_before(now: datetime) -> None:
    """Pages crawled now deduplicate against stories stored before stored text stopped being folded."""
    assert old_content_hash(PAGE) == PAGE_HASH
    record = normalize_item(article_item("fidelity", PAGE, published_at=now))
    assert record.content_hash == PAGE_HASH
    assert content_hash(record.body_text) == PAGE_HASH
    assert content_hash(PAGE) == content_hash(FOLDED) == PAGE_HASH


def test_content_hash_of_any_page_text_is_the_old_one() -> None:
    for text in random_texts(3000):
        assert content_hash(text) == old_content_hash(text), ascii(text)
        # and of the stored text, unless an invisible character sat between two NFKC composes
        if not re.search("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\x00-\x1f\x7f-\x9f]", text):
            assert content_hash(normalize_text(text)) == old_content_hash(text), ascii(text)


# --- putting the page's characters back -----------------------------------------------------------


def test_restore_gives_the_page_characters_back() -> None:
    assert restore_original_characters(FOLDED, STORED) == STORED
    assert restore_original_characters(old_normalize_text(PAGE), normalize_text(PAGE)) == normalize_text(PAGE)


def test_restore_keeps_what_only_the_stored_text_has() -> None:
    stored = "作者:张三\n" + FOLDED + "\n(责任编辑:李四)"
    assert restore_original_characters(stored, STORED) == "作者:张三\n" + STORED + "\n(责任编辑:李四)"


def test_restore_ignores_what_only_the_original_has() -> None:
    original = "首页 > 专栏 > 正文\n" + STORED + "\n分享到：微信"
    assert restore_original_characters(FOLDED, original) == STORED


def test_restore_keeps_the_stored_line_breaks() -> None:
    stored = FOLDED.replace("\n", "")
    expected = STORED.replace("\n", "")
    assert restore_original_characters(stored, STORED) == expected
    # the original broken into more lines than were stored
    original = STORED.replace("，", "，\n").replace("。", "。\n")
    restored = restore_original_characters(FOLDED, original)
    assert restored == STORED


def test_restore_keeps_stored_characters_where_the_texts_differ() -> None:
    stored = FOLDED.replace("科技创新", "科技进步").replace("专栏!", "专栏,欢迎投稿!")
    restored = restore_original_characters(stored, STORED)
    # the edited words stay as stored (their comma too); the text around them gets its characters back
    assert "科技进步？" in restored and "专栏,欢迎投稿！" in restored
    assert restored.startswith("市科学技术局党组书记、局长\u3000叶其炎\n编者按：")
    assert restore_original_characters("完全不同的一段文字,没有关系。", STORED) == "完全不同的一段文字,没有关系。"


def test_restore_collapsed_full_width_spaces() -> None:
    assert restore_original_characters("叶 其炎:好", "叶\u3000\u3000其炎：好") == "叶\u3000\u3000其炎：好"
    assert restore_original_characters("叶 其炎", "叶 \u3000其炎") == "叶 \u3000其炎"


def test_restore_never_loses_or_changes_text() -> None:
    """Whatever the two texts, the result folds to what was stored and keeps its lines."""
    rng = random.Random(5)
    pages = [STORED, *(normalize_text(t) for t in random_texts(300, seed=9))]
    for page in pages:
        stored = old_normalize_text(page)
        # damage the stored copy: drop, duplicate and change a few characters
        chars = list(stored)
        for _ in range(rng.randint(0, 4)):
            if chars:
                k = rng.randrange(len(chars))
                chars[k : k + 1] = rng.choice([[], [chars[k]] * 2, [rng.choice(TRICKY)]])
        damaged = "\n".join(line for line in "".join(chars).split("\n") if line.strip())
        restored = restore_original_characters(damaged, page)
        squash = re.compile(r"[^\S\n]+")
        assert squash.sub(" ", fold_for_matching(restored)) == squash.sub(" ", fold_for_matching(damaged))
        assert restored.count("\n") == damaged.count("\n")


# --- a stored story as people see it --------------------------------------------------------------


TITLE = "２０２５年ＡＩ赋能（科技）创新"


@pytest.fixture
def stored(sessions: sessionmaker[Session], now: datetime) -> sessionmaker[Session]:
    chain = Crawl(sessions, now)
    chain.run(article_item("fidelity", PAGE, title=TITLE, published_at=now - timedelta(days=1)))
    chain.run(article_item("other", "其他单位的体会，与本文无关。\n二是抓好落实。", title="抓好落实", published_at=now))
    chain.close()
    return sessions


def test_the_stored_story_keeps_the_page_characters(stored: sessionmaker[Session]) -> None:
    with stored() as session:
        article = session.query(Article).filter(Article.title == TITLE).one()
        assert article.body_text == STORED
        assert article.content_hash == PAGE_HASH
        assert article.summary is None or "，" in article.summary


def test_feeds_show_the_page_characters(stored: sessionmaker[Session], tmp_path: Path, now: datetime) -> None:
    config = make_config(tmp_path)
    publish_feeds(stored, config, now)
    feed = json.loads((config.public_dir / "feeds" / "all.json").read_text(encoding="utf-8"))
    (item,) = [i for i in feed["items"] if i["title"] == TITLE]
    # the summary starts after the byline (an excerpt), the full text keeps it as the page wrote it
    assert item["summary"].startswith("编者按：")
    for mark in ("，", "：", "（", "）", "；", "“", "”", "\u3000", "２０２５", "ＡＩ", "㈠", "①"):
        assert mark in item["summary"], mark
    assert "市科学技术局党组书记、局长\u3000叶其炎" in item["content_html"]
    rss = (config.public_dir / "feeds" / "all.rss").read_text(encoding="utf-8")
    assert "编者按：为深入学习宣传贯彻党的二十届四中全会精神，" in rss


def test_export_shows_the_page_characters(stored: sessionmaker[Session], tmp_path: Path, tz: ZoneInfo) -> None:
    out = tmp_path / "articles.jsonl"
    with stored() as session:
        export(session, "jsonl", Filters(), out, tz=tz)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    (record,) = [r for r in records if r["title"] == TITLE]
    assert record["body_text"] == STORED
    assert record["content_hash"] == PAGE_HASH


@pytest.mark.parametrize(
    "query",
    [
        "2025年",  # a lone Han character: the LIKE scan
        "２０２５年",
        "ai赋能",  # the index
        "ＡＩ赋能",
        "Ａｉ赋能",
        "ＡＩ",
        "（科技）创新",
        "(科技)创新",
        "科技创新?",
        "科技创新？",
        '"全会精神(以下简称"',
        "＂全会精神（以下简称＂",
        "１ 学习心得",
        "“全会精神”",
    ],
)
def test_search_finds_the_story_whatever_the_width_of_the_query(
    stored: sessionmaker[Session], tz: ZoneInfo, query: str
) -> None:
    with stored() as session:
        result = search(session, query, Filters(), tz=tz)
    assert [hit.title for hit in result.hits] == [TITLE], query


def test_search_snippet_shows_the_page_characters(stored: sessionmaker[Session], tz: ZoneInfo) -> None:
    with stored() as session:
        (hit,) = search(session, "2025年", Filters(), tz=tz).hits
        assert "<mark>２０２５年</mark>" in hit.snippet_html
        assert hit.title_html == "<mark>２０２５年</mark>ＡＩ赋能（科技）创新"
        for mark in ("，", "？", "①", "\u3000", "㈠"):
            assert mark in hit.snippet_html, mark
        (hit,) = search(session, "学习 ai", Filters(), tz=tz).hits
        assert "<mark>ＡＩ</mark>赋能" in hit.snippet_html


def test_highlights_cover_whole_original_characters() -> None:
    """A match inside what one character folds to marks that whole character (㈠ is (一))."""
    query = parse_query("一 2025")
    patterns = [highlight_pattern(term) for term in query.terms(positive=True)]
    html = str(snippet_html("第㈠条 ２０２５年", patterns))
    assert html == "第<mark>㈠</mark>条 <mark>２０２５</mark>年"
