"""Issue 3 end to end, through the `zhuanlan` command in subprocesses against the sample sources:
a WeChat source configured by an article URL + album title, `crawl --recheck` (deleted at the
source → our copy kept; edited → a new snapshot version), and the verification page (paused with
back-off, then blocked at the retry limit until an operator crawls with --force)."""

from __future__ import annotations

import json
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from crawler.samples.catalog import WECHAT_SOURCE_KEY
from crawler.samples.server import SampleSources, sample_config_toml
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Appearance, Article, Snapshot, Source, SourceRun
from tests.support import free_port, run_cli

WX = WECHAT_SOURCE_KEY
GONE_ALONE = "zrzyj-2"  # a WeChat-only story: deleting it deletes the story
GONE_WITH_REPOST = "jyj-2"  # also reposted on the committee site: the story stays live
EDITED = "sthjj-2"
EDIT_NOTE = "（编者按：本文第三部分于发布后补充了工作安排。）"


def crawl_json(cfg: Path, db_url: str, *args: str) -> dict[str, object]:
    proc = run_cli(cfg, db_url, "crawl", "--json", *args)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    summary: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary


def write_config(tmp_path: Path, samples: SampleSources, *, wechat_url: str | None = None, **options: object) -> Path:
    text = sample_config_toml(samples.base_url, smtp_port=free_port(), web_port=free_port(), anchor=samples.anchor)
    if wechat_url is not None:
        text = text.replace(f'url = "{samples.album_url}"', f'url = "{wechat_url}"', 1)
    if options:
        extra = "".join(f", {key} = {json.dumps(value)}" for key, value in options.items())
        text = re.sub(r"(options = \{ delay_seconds = 0)", lambda m: m.group(1) + extra, text, count=1)
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def wechat_keys(samples: SampleSources, *story_keys: str) -> dict[str, str]:
    """Story key -> canonical key of its WeChat appearance (ask before deleting: truth leaves deleted stories out)."""
    truth = samples.truth()
    return {k: next(a.canonical_key for a in truth.story(k).appearances if a.source_key == WX) for k in story_keys}


def test_article_url_source_then_recheck_deletions_and_edits(
    tmp_path: Path, db_url: str, samples: SampleSources
) -> None:
    truth = samples.truth()
    # The source is configured by one article's URL + the album title: the album comes from album_info_list.
    seed = next(a.url for a in truth.story(EDITED).appearances if a.source_key == WX)
    cfg = write_config(tmp_path, samples, wechat_url=seed)
    assert "appmsgalbum" not in cfg.read_text(encoding="utf-8").split(f'key = "{WX}"')[1].split("[[sources]]")[0]
    assert run_cli(cfg, db_url, "init").returncode == 0
    # The committee site too, so GONE_WITH_REPOST has a second, live appearance.
    summary = crawl_json(cfg, db_url, "--source", WX, "--source", "jgdj-site")
    assert summary["status"] == "ok", summary
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    with sessions() as s:
        stored = set(s.scalars(select(Appearance.canonical_key).join(Source).where(Source.key == WX)))
    assert stored == {a.canonical_key for a in truth.by_source(WX)}

    keys = wechat_keys(samples, GONE_ALONE, GONE_WITH_REPOST, EDITED)
    samples.set_deleted(GONE_ALONE)
    samples.set_deleted(GONE_WITH_REPOST)
    samples.set_edited(EDITED, EDIT_NOTE)
    with sessions() as s:
        before = {
            key: (ap.article.body_text, ap.snapshot_id)
            for key in keys.values()
            for ap in s.scalars(select(Appearance).where(Appearance.canonical_key == key))
        }
    article_requests = len(samples.requests_to("/s?"))
    album_requests = len(samples.requests_to("/mp/appmsgalbum"))
    recheck = crawl_json(cfg, db_url, "--recheck", "--recheck-days", "20")
    assert recheck["status"] == "ok", recheck
    assert recheck["new_stories"] == 0
    assert len(samples.requests_to("/s?")) > article_requests
    assert len(samples.requests_to("/mp/appmsgalbum")) == album_requests  # a recheck never lists the album

    with sessions() as s:
        for story_key, story_state in ((GONE_ALONE, "deleted"), (GONE_WITH_REPOST, "live")):
            ap = s.scalars(select(Appearance).where(Appearance.canonical_key == keys[story_key])).one()
            assert ap.state == "deleted", story_key
            assert ap.article.state == story_state, story_key
            # our copy stays: the text and the snapshot of the last good fetch
            body, snapshot_id = before[ap.canonical_key]
            assert ap.article.body_text == body and len(body) > 100
            assert ap.snapshot_id == snapshot_id and snapshot_id is not None
            snapshot = s.get(Snapshot, snapshot_id)
            assert snapshot is not None and "js_content" in zlib.decompress(snapshot.content).decode("utf-8")
            others = [a for a in ap.article.appearances if a.id != ap.id]
            if story_state == "live":  # still live on the committee site
                assert others and all(a.state == "ok" for a in others)
            else:
                assert not others

        edited = s.scalars(select(Appearance).where(Appearance.canonical_key == keys[EDITED])).one()
        old_body, old_snapshot = before[edited.canonical_key]
        assert edited.state == "ok" and edited.snapshot_id != old_snapshot
        versions = s.scalars(select(Snapshot).where(Snapshot.appearance_id == edited.id).order_by(Snapshot.id)).all()
        assert [v.id for v in versions] == [old_snapshot, edited.snapshot_id]
        assert EDIT_NOTE not in zlib.decompress(versions[0].content).decode("utf-8")
        assert EDIT_NOTE in zlib.decompress(versions[1].content).decode("utf-8")
        article = s.get(Article, edited.article_id)
        assert article is not None and article.state == "edited"
        assert "本文第三部分于发布后补充了工作安排" in article.body_text and old_body != article.body_text
        # one story, one appearance: an edit is a version, never a new story
        assert len(article.appearances) == 1

    engine.dispose()


def source_row(db_url: str) -> Source:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            row = s.scalars(select(Source).where(Source.key == WX)).one()
            s.expunge(row)
            return row
    finally:
        engine.dispose()


def test_verification_page_pauses_then_blocks_until_an_operator_acts(
    tmp_path: Path, db_url: str, samples: SampleSources
) -> None:
    cfg = write_config(tmp_path, samples, verification_max_retries=2, verification_backoff_minutes=20)
    assert run_cli(cfg, db_url, "init").returncode == 0
    samples.set_verification(True)

    started = datetime.now(UTC)
    first = crawl_json(cfg, db_url, "--source", WX)
    assert first["status"] == "failed"
    src = source_row(db_url)
    assert src.status == "paused" and src.consecutive_failures == 1
    assert src.paused_until is not None
    pause = (src.paused_until - started).total_seconds() / 60
    assert 19 <= pause <= 21, pause
    assert src.last_error and src.last_error.startswith("paused until ")
    assert "环境异常" in src.last_error and "try 1 of 2" in src.last_error
    # only the album page was asked for: nothing more goes to WeChat after the verification page
    assert len(samples.requests_to("/mp/appmsgalbum")) == 1 and not samples.requests_to("/s?")

    # The operator forces a try: a second verification page in a row reaches the limit of 2.
    crawl_json(cfg, db_url, "--source", WX, "--force")
    src = source_row(db_url)
    assert src.status == "blocked" and src.consecutive_failures == 2
    assert src.last_error and "blocked after 2" in src.last_error and "--force" in src.last_error
    blocked_requests = len(samples.requests_to("/mp/appmsgalbum"))

    # Blocked stays blocked: ordinary crawls (also later, when the back-off would be over) skip it.
    skipped = crawl_json(cfg, db_url, "--source", WX)
    assert any(str(line).startswith(WX) for line in skipped.get("skipped", []))  # type: ignore[attr-defined]
    assert len(samples.requests_to("/mp/appmsgalbum")) == blocked_requests
    assert source_row(db_url).status == "blocked"
    status = run_cli(cfg, db_url, "status")
    assert f"{WX} | 微信公众号合集 | 被拦截 |" in status.stdout, status.stdout

    # The operator passed the check: a forced crawl succeeds and clears the block.
    samples.set_verification(False)
    fixed = crawl_json(cfg, db_url, "--source", WX, "--force")
    assert fixed["status"] == "ok" and fixed["new_stories"]
    src = source_row(db_url)
    assert src.status == "ok" and src.paused_until is None and src.consecutive_failures == 0
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        runs = s.scalars(select(SourceRun).join(Source).where(Source.key == WX).order_by(SourceRun.id)).all()
        assert [r.status for r in runs] == ["blocked", "blocked", "ok"]
    engine.dispose()
