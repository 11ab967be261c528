"""The correction flow as the office uses it, end to end on the sample sources: a real crawl, a
correction with the installed `zhuanlan correct`, another in headless Chromium against `zhuanlan
serve` (waitress) after logging in, then `zhuanlan retag`, a re-crawl of every stored page, the
feeds rebuilt and the digest previewed: the corrections hold everywhere."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import feedparser
import pytest
from sqlalchemy import select

from crawler.samples.server import SampleSources, sample_config_toml
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Article, Correction, Unit
from tests.support import free_port, run_zhuanlan, serving
from zhuanlan_config import load_config

if TYPE_CHECKING:
    from playwright.sync_api import Browser

PASSWORD = "更正-口令-e2e"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def zhuanlan(cfg: Path, db_url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": db_url, "USER": "office-zhou"}
    return run_zhuanlan("--config", str(cfg), *args, env=env, timeout=timeout)


@pytest.fixture
def served(tmp_path: Path, db_url: str, samples: SampleSources) -> Iterator[tuple[Path, str, int]]:
    web_port = free_port()
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(sample_config_toml(samples.base_url, smtp_port=free_port(), web_port=web_port), encoding="utf-8")
    assert zhuanlan(cfg, db_url, "init").returncode == 0
    crawl = zhuanlan(cfg, db_url, "crawl", "--json")
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": db_url, "ZHUANLAN_ADMIN_PASSWORD": PASSWORD}
    with serving(cfg, web_port, env):
        yield cfg, db_url, web_port


def test_corrections_by_cli_and_browser_hold_through_retag_recrawl_feeds_and_digest(
    served: tuple[Path, str, int], chromium: Browser
) -> None:
    cfg, db_url, port = served
    config = load_config(cfg)
    sessions = session_factory(make_engine(db_url))
    with sessions() as s:
        unattributed = s.scalars(select(Article).where(Article.unit_id.is_(None)).order_by(Article.id)).all()
        candidates = s.scalars(
            select(Article).where(Article.column.is_(None), Article.column_candidate.is_not(None)).order_by(Article.id)
        ).all()
        assert unattributed, "the samples carry an album story with no readable unit"
        assert candidates, "the samples carry a unit-site story whose title only proposes the column"
        lost, candidate = unattributed[0], candidates[0]
        target_unit = s.scalars(select(Unit).where(Unit.name != config.units[0].name).order_by(Unit.id)).first()
        assert target_unit is not None
        unit_name, unit_id = target_unit.name, target_unit.id
        lost_guid, lost_title, candidate_guid = lost.guid, lost.title, candidate.guid
        candidate_title, candidate_column = candidate.title, candidate.column_candidate

    status = zhuanlan(cfg, db_url, "status")
    assert status.returncode == 0 and f"单位未识别的文章：{len(unattributed)} 篇" in status.stdout, status.stdout
    assert lost_guid in status.stdout

    # 1. the command line: unit and authors
    fixed = zhuanlan(
        cfg, db_url, "correct", lost_guid, "--unit", unit_name, "--author", "顾清远:党组书记、局长", "--note", "核实"
    )
    assert fixed.returncode == 0, fixed.stderr
    assert "unit" in fixed.stdout and "office-zhou" in fixed.stdout
    bad = zhuanlan(cfg, db_url, "correct", lost_guid, "--unit", "不存在的单位")
    assert bad.returncode == 1 and "no configured unit" in bad.stderr

    # 2. the browser: log in, confirm the column candidate from the review page, see the record
    page = chromium.new_page()
    base = f"http://127.0.0.1:{port}"
    try:
        page.goto(f"{base}/review")
        assert page.url.endswith("/login")
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url(f"{base}/health")
        page.goto(f"{base}/review")
        assert candidate_title in page.content()
        row = page.locator("tr", has_text=candidate_title)
        row.locator("button[value=in]").click()
        page.wait_for_url(f"{base}/review")
        assert candidate_title not in page.locator("#candidates + table").inner_text()
        page.goto(f"{base}/story/{candidate_guid}")
        assert "人工确认" in page.locator("#column-why").inner_text()
        history = page.locator("section.corrections").inner_text()
        assert "管理员（网页）" in history and "计入专栏" in history
        page.goto(f"{base}/story/{lost_guid}")
        assert "人工更正" in page.locator("#unit-from").inner_text()
        assert "office-zhou" in page.locator("section.corrections").inner_text()
        # logged out, a correction is refused
        anonymous = chromium.new_page()
        try:
            response = anonymous.request.post(f"{base}/story/{lost_guid}/correct", form={"unit": "__none__"})
            assert response.status in (400, 403)
        finally:
            anonymous.close()
    finally:
        page.close()

    def check() -> None:
        with sessions() as s:
            story = s.scalars(select(Article).where(Article.guid == lost_guid)).one()
            assert (story.unit_id, story.unit_from, story.author) == (unit_id, "manual", "顾清远")
            assert story.authors == [{"name": "顾清远", "positions": ["党组书记", "局长"]}]
            member = s.scalars(select(Article).where(Article.guid == candidate_guid)).one()
            assert (member.column, member.column_reason) == (candidate_column, "manual")
            assert len(s.scalars(select(Correction)).all()) == 3

    check()
    # 3. retag, then a re-crawl of every stored page: the corrections stay
    assert zhuanlan(cfg, db_url, "retag").returncode == 0
    check()
    recrawl = zhuanlan(cfg, db_url, "crawl", "--refresh", "--json")
    assert recrawl.returncode == 0, recrawl.stderr[-3000:]
    check()

    # 4. the feeds: the corrected story is in its new unit's feed
    assert zhuanlan(cfg, db_url, "feeds").returncode == 0
    index = json.loads((config.public_dir / "feeds" / "index.json").read_bytes())
    unit_path = next(f["path"] for f in index["feeds"] if f["kind"] == "unit" and f["filter"] == unit_id)
    unit_feed = feedparser.parse((config.public_dir / "feeds" / f"{unit_path}.atom").read_bytes())
    assert lost_title in {e.title for e in unit_feed.entries}

    # 5. the digest of the story's week: listed under its unit, no longer as unattributed
    with sessions() as s:
        published = s.scalars(select(Article.published_at).where(Article.guid == lost_guid)).one()
    assert isinstance(published, datetime)
    year, week, _ = published.astimezone(SHANGHAI).isocalendar()
    out = cfg.parent / "preview"
    preview = zhuanlan(cfg, db_url, "digest", "preview", "--week", f"{year}-W{week:02d}", "--out", str(out))
    assert preview.returncode == 0, preview.stderr
    text = next(out.glob("*-operator.txt")).read_text("utf-8")
    by_unit = text.split("【本周刊发文章（按单位）】", 1)[1].split("【本周未刊发单位", 1)[0]
    heading = next(line for line in by_unit.splitlines() if line.startswith(f"{unit_name}（本周"))
    own = by_unit.split(heading, 1)[1]
    own = own.split("（本周", 1)[0] if "（本周" in own else own  # up to the next unit's heading
    assert lost_title in own
    pending = text.split("【未计入任何单位（仅运维）】", 1)[1].split("【采集异常", 1)[0]
    assert lost_title not in pending
