"""The tag stage: `Tagger` sets Record.tags from the configured vocabulary and the source's unit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from crawler.items import STATE_DELETED, ArticleItem
from pipeline.record import Record, SourceRef, Tags
from pipeline.tag import Tagger, vocabulary_from_path
from zhuanlan_config import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

CONFIG = """
[[units]]
name = "张掖市科学技术局"
aliases = ["市科学技术局", "市科技局"]

[[units]]
name = "张掖市教育局"
aliases = ["市教育局"]

[[topics]]
name = "科技创新"
keywords = { "科技创新" = 1.0, "成果转化" = 2.0 }
min_score = 2.0

[[columns]]
name = "学习贯彻党的二十届四中全会精神"
title_keywords = ["四中全会"]
"""

BODY = """学习贯彻党的二十届四中全会精神
市科学技术局党组书记、局长 叶其炎
我们将深入学习领会全会精神，聚焦科技创新，打通成果转化堵点，推动科技成果就地转化。
"""


def _record(state: str = "ok") -> Record:
    item = ArticleItem(
        source_key="kjj-site",
        source_kind="site_column",
        url="https://kjj.example.cn/art/2.html",
        canonical_key="https://kjj.example.cn/art/2.html",
        fetched_at=datetime(2026, 11, 26, 2, 0, tzinfo=UTC),
        state=state,
        title="以四中全会精神引领科技创新",
        body_text=BODY,
    )
    return Record(item=item, title=item.title, body_html="", body_text=BODY, content_hash="1" * 64)


def _tagger(config_path: str) -> Tagger:
    return Tagger(vocabulary_from_path(config_path))


def _source(unit: str | None) -> SourceRef:
    return SourceRef(key="kjj-site", kind="site_column", unit=unit)


def test_tags_a_record_with_the_configured_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "zhuanlan.toml"
    path.write_text(CONFIG, encoding="utf-8")
    record = _record()
    assert _tagger(str(path)).tag(record, _source("张掖市教育局")) is record
    assert record.tags is not None
    assert record.tags.unit == "张掖市科学技术局"  # the byline beats the source's unit
    assert (record.tags.author, record.tags.positions) == ("叶其炎", ["党组书记", "局长"])
    # listed by no album or column list: the title keyword only proposes the column
    assert (record.tags.column, record.tags.column_candidate) == (None, "学习贯彻党的二十届四中全会精神")
    assert record.tags.unit_from == "byline"
    assert record.tags.topics == {"科技创新": 1.0 * 1 + 3.0 * 1 + 2.0 * 1}
    assert record.tags.keywords


def test_owning_unit_when_nothing_else_names_one(tmp_path: Path) -> None:
    path = tmp_path / "zhuanlan.toml"
    path.write_text(CONFIG, encoding="utf-8")
    record = replace(_record(), body_text="全会精神内涵丰富，我们将认真学习领会。")
    tags = _tagger(str(path)).tag(record, _source("张掖市教育局")).tags
    assert tags is not None and (tags.unit, tags.author) == ("张掖市教育局", None)


def test_missing_config_tags_with_an_empty_vocabulary(tmp_path: Path) -> None:
    for setting in ("", str(tmp_path / "absent.toml")):
        record = _tagger(setting).tag(_record(), _source(None))
        assert record.tags is not None
        assert (record.tags.unit, record.tags.author, record.tags.positions) == (None, "叶其炎", ["党组书记", "局长"])
        assert record.tags.topics == {} and record.tags.column is None
        assert record.tags.keywords


def test_invalid_config_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "zhuanlan.toml"
    path.write_text("[[units]]\nnmae = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        _tagger(str(path))


def test_tagged_and_gone_records_keep_what_they_have() -> None:
    tagger = _tagger("")
    gone = _record(STATE_DELETED)
    assert tagger.tag(gone, _source(None)).tags is None
    record = _record()
    record.tags = Tags(unit="张掖市教育局")  # tagged by the crawl process already
    assert tagger.tag(record, _source(None)).tags == Tags(unit="张掖市教育局")
