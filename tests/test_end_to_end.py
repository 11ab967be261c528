"""End to end: sample sources on a free loopback port, a real crawl in a subprocess, then the
stored rows, the feed files (parsed back) and the digest mails (received by a real SMTP server)."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import feedparser
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from crawler.samples.server import SampleSources, sample_config_toml
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Appearance, Article, ArticleTag, Delivery, SourceRun, Tag, Unit
from tests.support import free_port, run_cli
from zhuanlan_config import load_config


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def test_full_cycle(tmp_path: Path, db_url: str, samples: SampleSources, inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(sample_config_toml(samples.base_url, smtp_port=smtp_port, web_port=free_port()), encoding="utf-8")
    truth = samples.truth()

    init = run_cli(cfg, db_url, "init")
    assert init.returncode == 0, init.stderr
    crawl = run_cli(cfg, db_url, "crawl", "--json")
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    summary = json.loads(crawl.stdout.strip().splitlines()[-1])
    assert summary["status"] == "ok", summary

    engine = make_engine(db_url)
    sessions = session_factory(engine)
    with sessions() as s:
        stories = s.scalars(select(Article)).all()
        appearances = s.scalars(select(Appearance)).all()
        # every story of the samples stored once; every appearance kept
        assert len(stories) == truth["story_count"], sorted(a.title for a in stories)
        assert len(appearances) == truth["appearance_count"]
        by_title = {a.title: a for a in stories}
        # reposts merged: stories that appear on several sites have several appearances, one original
        for title, count in truth["appearances_by_title"].items():
            article = by_title[title]
            assert len(article.appearances) == count, title
            assert sum(ap.is_original for ap in article.appearances) == 1, title
        # every stored story against the ground truth: its unit (None: unattributed), its authors in
        # byline order with their positions, and whether it is in the column or only a candidate
        units = {u.id: u.name for u in s.scalars(select(Unit))}
        story_key = truth.story_of_appearance()
        wrong: list[str] = []
        for article in stories:
            keys = {story_key[ap.canonical_key] for ap in article.appearances}
            assert len(keys) == 1, (article.title, keys)
            expected = truth.story(keys.pop())
            stored_fields = {
                "unit": units[article.unit_id] if article.unit_id is not None else None,
                "authors": article.authors,
                "author": article.author,
                "positions": article.positions,
                "column": article.column,
                "candidate": article.column_candidate,
            }
            expected_fields = {
                "unit": expected.unit,
                "authors": expected.authors_json,
                "author": expected.author,
                "positions": expected.positions,
                "column": expected.column,
                "candidate": expected.column_candidate,
            }
            wrong += [
                f"{expected.key} {field}: expected {expected_fields[field]!r}, stored {stored_fields[field]!r} (byline {expected.byline!r})"
                for field in expected_fields
                if stored_fields[field] != expected_fields[field]
            ]
        assert not wrong, "\n".join(wrong)
        assert {a.title for a in stories if a.column} == set(truth["column_titles"])
        assert {a.title for a in stories if a.unit_id is None} == set(truth["unattributed_titles"])
        topic_count = s.scalar(select(func.count()).select_from(ArticleTag).join(Tag).where(Tag.kind == "topic"))
        assert topic_count and topic_count >= len(truth["column_titles"]) // 2
        # every appearance sits on the story the ground truth says, and 首发 is the earliest place
        story_of = {ap.canonical_key: ap.article_id for ap in appearances}
        for story in truth.stored_stories():
            fetched = [a for a in story.appearances if a.passes_column_rules]
            ids = {story_of[a.canonical_key] for a in fetched}
            assert len(ids) == 1, (story.key, ids)
            originals = [ap.canonical_key for ap in appearances if ap.article_id in ids and ap.is_original]
            assert originals == [fetched[0].canonical_key], story.key
        first, second = truth.near_template_pair
        assert (
            story_of[truth.story(first).appearances[0].canonical_key]
            != story_of[truth.story(second).appearances[0].canonical_key]
        )
        runs = s.scalars(select(SourceRun)).all()
        assert {r.status for r in runs} == {"ok"}, [(r.source_id, r.error_summary) for r in runs]

    # a second crawl adds nothing
    again = run_cli(cfg, db_url, "crawl", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["new_stories"] == 0 and second["reposts"] == 0
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Article)) == truth["story_count"]
        assert s.scalar(select(func.count()).select_from(Appearance)) == truth["appearance_count"]

    # feeds, parsed back
    feeds = run_cli(cfg, db_url, "feeds")
    assert feeds.returncode == 0, feeds.stderr
    config = load_config(cfg)
    feed_dir = config.public_dir / "feeds"
    atom = feedparser.parse((feed_dir / "all.atom").read_bytes())
    rss = feedparser.parse((feed_dir / "all.rss").read_bytes())
    assert not atom.bozo and not rss.bozo
    assert len(atom.entries) == min(truth["story_count"], config.feeds.items_per_feed)
    assert {e.title for e in rss.entries} <= set(by_title)
    assert (feed_dir / "index.opml").exists()

    # the digest, received and parsed back; a second send sends nothing
    week = truth["digest_week"]
    sent = run_cli(cfg, db_url, "digest", "send", "--week", week)
    assert sent.returncode == 0, sent.stderr
    recipients = {r.email for r in config.recipients if r.active}
    got = {str(m["To"].addresses[0].addr_spec) for m in handler.messages}
    assert recipients <= got
    one = handler.messages[0]
    assert "周" in str(one["Subject"])
    html = one.get_body(("html",))
    text = one.get_body(("plain",))
    assert html is not None and text is not None
    assert any(title in html.get_content() for title in truth["digest_titles"])
    count = len(handler.messages)
    resend = run_cli(cfg, db_url, "digest", "send", "--week", week)
    assert resend.returncode == 0
    assert len(handler.messages) == count
    # one delivery row per recipient; the operator's copy (with failed sources) is recorded on the digest
    assert count == len(recipients) + (1 if config.digest.operator_email else 0)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "sent")) == len(recipients)
    engine.dispose()


def test_a_broken_source_is_recorded_and_the_others_still_run(
    tmp_path: Path, db_url: str, samples: SampleSources
) -> None:
    dead_port = free_port()  # nothing listens here
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(
        sample_config_toml(samples.base_url, smtp_port=free_port(), web_port=free_port())
        + f'\n[[sources]]\nkey = "dead-site"\nkind = "site_column"\nurl = "http://127.0.0.1:{dead_port}/col/index.html"\n'
        + '[sources.options]\nlist_type = "html"\n',
        encoding="utf-8",
    )
    assert run_cli(cfg, db_url, "init").returncode == 0
    crawl = run_cli(cfg, db_url, "crawl", "--json", "--source", "dead-site", "--source", "kjj-site")
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    summary = json.loads(crawl.stdout.strip().splitlines()[-1])
    assert summary["status"] == "partial"
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        runs = {r.source.key: r for r in s.scalars(select(SourceRun))}
        assert runs["kjj-site"].status == "ok" and runs["kjj-site"].new_stories > 0
        dead = runs["dead-site"]
        assert dead.status == "error"
        assert dead.error_summary and "refused" in dead.error_summary
        assert dead.source.consecutive_failures == 1 and dead.source.last_error
        # nothing was stored for the dead source
        assert s.scalar(select(func.count()).select_from(Appearance).where(Appearance.source_id == dead.source_id)) == 0
    engine.dispose()
