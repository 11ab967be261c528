"""Issue 5: `zhuanlan retag` as a command on a crawled sample database — the topic vocabulary
changes in the config, retag follows it, shows progress, and an interrupt (a real SIGINT) in the
middle leaves a state that a rerun completes to the same end state as an uninterrupted run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from crawler.samples.catalog import WECHAT_SOURCE_KEY
from crawler.samples.server import SampleSources, sample_config_toml
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Appearance, Article, ArticleTag, Source
from pipeline.corpus.retag import retag_corpus, tags_for_article
from pipeline.tagging.rules import Vocabulary
from tests.support import free_port
from zhuanlan_config import load_config

ROOT = Path(__file__).resolve().parent.parent
NEW_TOPICS = """[[topics]]
name = "全会精神宣讲"
keywords = { "四中全会" = 3.0, "全会精神" = 2.0, "宣讲" = 2.0 }
min_score = 3.0

"""
# Runs the real command line in a fresh interpreter, with a real SIGINT sent to itself once three
# batches are committed: an interrupt at a known point instead of a race with the clock.
INTERRUPTING = """
import os, signal, sys
import pipeline.corpus.retag as retag
real = retag.retag_corpus
def interrupted_after_three(*args, progress=None, **kwargs):
    def report(done, total):
        if progress is not None:
            progress(done, total)
        if done >= 3:
            os.kill(os.getpid(), signal.SIGINT)
    return real(*args, progress=report, **kwargs)
retag.retag_corpus = interrupted_after_three
import zhuanlan_cli
sys.exit(zhuanlan_cli.main(sys.argv[1:]))
"""


def run(db_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "ZHUANLAN_DATABASE_URL": db_url},
        timeout=300,
        check=False,
    )


def topics(session: Session) -> dict[int, set[str]]:
    """Article id -> its machine topic tags."""
    out: dict[int, set[str]] = {}
    articles = session.scalars(select(Article).options(selectinload(Article.tags).selectinload(ArticleTag.tag)))
    for article in articles:
        out[article.id] = {row.tag.name for row in article.tags if row.tag.kind == "topic" and row.origin != "manual"}
    return out


def test_retag_follows_the_vocabulary_and_survives_an_interrupt(
    tmp_path: Path, db_url: str, samples: SampleSources
) -> None:
    cfg = tmp_path / "zhuanlan.toml"
    original = sample_config_toml(samples.base_url, smtp_port=free_port(), web_port=free_port(), anchor=samples.anchor)
    cfg.write_text(original, encoding="utf-8")
    cli = ("-m", "zhuanlan_cli", "--config", str(cfg))
    assert run(db_url, *cli, "init").returncode == 0
    crawl = run(db_url, *cli, "crawl", "--source", WECHAT_SOURCE_KEY)
    assert crawl.returncode == 0, crawl.stderr[-3000:]

    engine = make_engine(db_url)
    sessions = session_factory(engine)
    old_names = {t.name for t in load_config(cfg).topics}
    with sessions() as s:
        before = topics(s)
    total = len(before)
    assert total >= 10
    assert set().union(*before.values()) & old_names  # the crawl tagged with the old vocabulary

    # The office replaces its topic vocabulary.
    start, end = original.index("[[topics]]"), original.index("[crawl]")
    cfg.write_text(original[:start] + NEW_TOPICS + original[end:], encoding="utf-8")
    vocab = Vocabulary.from_config(load_config(cfg))
    assert [t.name for t in vocab.topics] == ["全会精神宣讲"]

    # Interrupted after three committed batches of one article.
    stopped = run(db_url, "-c", INTERRUPTING, "--config", str(cfg), "retag", "--batch-size", "1")
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr[-2000:]
    assert "zhuanlan: interrupted" in stopped.stderr
    assert f"3/{total}" in stopped.stderr and f"{total}/{total}" not in stopped.stderr
    with sessions() as s:
        middle = topics(s)
    first_ids = sorted(middle)[:3]
    assert all(not (middle[i] & old_names) for i in first_ids)  # done: old topics gone
    assert any(middle[i] & old_names for i in sorted(middle)[4:])  # not done yet

    # A plain rerun completes the job, with a progress bar.
    rerun = run(db_url, *cli, "retag", "--batch-size", "4")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert re.search(rf"retag \[#+\] {total}/{total}", rerun.stderr), rerun.stderr
    assert re.search(rf"retag: {total} articles in {-(-total // 4)} batches, \d+ changed", rerun.stdout), rerun.stdout

    with sessions() as s:
        after = topics(s)
        assert not set().union(*after.values()) & old_names
        assert any("全会精神宣讲" in names for names in after.values())
        assert after != before
        # The same end state as one uninterrupted run: what the rules say of every stored story.
        articles = s.scalars(
            select(Article).options(
                selectinload(Article.appearances).selectinload(Appearance.source).selectinload(Source.unit)
            )
        ).all()
        for article in articles:
            assert after[article.id] == set(tags_for_article(article, vocab).topics), article.title
    # ... and a fixed point: retagging again changes nothing.
    again = retag_corpus(sessions, vocab, batch_size=50, now=datetime.now(UTC))
    assert (again.articles, again.changed) == (total, 0)
    engine.dispose()
