"""Issue 19, point 1, as the office does it: the sample sources crawled, `digest.review =
"required"`, the installed `zhuanlan` refusing to approve or send while stories are unattributed,
then in headless Chromium against `zhuanlan serve` (waitress): log in, open the issue, see the
approval refused, settle the unattributed stories through the correction flow, preview the mail
as each kind of recipient gets it, write the intro and approve. `zhuanlan digest send` then
mails exactly the previewed HTML to a real SMTP server, once."""

from __future__ import annotations

import os
import re
import subprocess
from contextlib import closing
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from crawler.samples.server import SampleSources, sample_config_toml
from feeds.digest import previous_week
from pipeline.corpus.db import make_engine, session_factory
from pipeline.corpus.models import Article
from tests.support import ZHUANLAN, free_port, serving
from tests.test_corrections_e2e import SHANGHAI, zhuanlan
from tests.test_digest_send import mail_server, parse

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Browser, Page

PASSWORD = "审核-口令-e2e"
INTRO = "本期周报经办公室审核。请各单位对照检查，继续组织撰写学习体会。"


def raw_preview(page: Page, base: str, week: str, who: str) -> str:
    """The preview's bytes as served (with the page's login cookie), not the browser's re-serialisation."""
    response = page.request.get(f"{base}/digest/review/preview?week={week}&who={who}")
    assert response.status == 200
    assert "sandbox" in response.headers["content-security-policy"]
    return response.text()


def test_the_office_reviews_previews_and_approves_before_anything_is_sent(
    tmp_path: Path, db_url: str, samples: SampleSources, chromium: Browser
) -> None:
    week = previous_week(datetime.now(SHANGHAI))
    web_port = free_port()
    with mail_server() as (handler, smtp_port):
        cfg = tmp_path / "zhuanlan.toml"
        cfg.write_text(
            sample_config_toml(samples.base_url, smtp_port=smtp_port, web_port=web_port, review="required"),
            encoding="utf-8",
        )
        assert zhuanlan(cfg, db_url, "init").returncode == 0
        crawl = zhuanlan(cfg, db_url, "crawl", "--json")
        assert crawl.returncode == 0, crawl.stderr[-3000:]

        # The command line refuses while the issue has unattributed stories, and sends nothing.
        refused = zhuanlan(cfg, db_url, "digest", "approve", "--week", week)
        assert refused.returncode == 1 and "approval refused" in refused.stderr and "未识别所属单位" in refused.stderr
        not_sent = zhuanlan(cfg, db_url, "digest", "send", "--week", week)
        assert not_sent.returncode == 1 and "not sent" in not_sent.stderr, not_sent.stderr
        assert handler.messages == []

        base = f"http://127.0.0.1:{web_port}"
        page = chromium.new_page()
        env = {**os.environ, "ZHUANLAN_DATABASE_URL": db_url, "ZHUANLAN_ADMIN_PASSWORD": PASSWORD}
        with serving(cfg, web_port, env), closing(page):
            page.goto(f"{base}/digest/review?week={week}")
            assert page.url.endswith("/login")
            page.fill("input[name=password]", PASSWORD)
            page.click("main form button[type=submit]")
            page.wait_for_url(f"{base}/health")
            page.click("#digest-review-link")
            page.wait_for_url(f"{base}/digest/review")
            assert page.locator("#issue-state").get_attribute("data-state") == "draft"

            # Approving now is refused, naming the stories to settle first.
            unresolved = page.locator("#unresolved-list tr a").all_inner_texts()
            assert unresolved, "the samples' issue carries the 工委's own shares, with no unit"
            page.click("#approve")
            error = page.locator("#review-error").inner_text()
            assert "未识别所属单位" in error and all(title in error for title in unresolved)
            assert page.locator("#issue-state").get_attribute("data-state") == "draft"

            # 确定 with no unit chosen settles nothing: the browser asks for a choice first.
            first = page.locator("#unresolved-list tr").first
            first.locator("button[type=submit]").click()
            assert first.locator("select[name=unit]").evaluate("s => !s.validity.valid && s.value === ''")
            assert page.locator("#unresolved-list tr a").all_inner_texts() == unresolved

            # Settle them in place through the correction flow: the 工委's own, no unit's.
            for _ in unresolved:
                row = page.locator("#unresolved-list tr").first
                row.locator("select[name=unit]").select_option("__none__")
                row.locator("button[type=submit]").click()
                page.wait_for_load_state()
            assert page.locator("#unresolved-list").count() == 0
            page.goto(f"{base}/story/{_guid_of(db_url, unresolved[0])}")
            assert "管理员（网页）" in page.locator("section.corrections").inner_text()

            # The preview as each kind of recipient gets it, in the sandboxed frame.
            seen = {}
            for kind, marker in (("with", "本周刊发"), ("without", "本单位"), ("operator", "运维副本")):
                page.goto(f"{base}/digest/review?week={week}&who={kind}")
                frame = page.frame_locator("#preview")
                frame.locator("h1").wait_for()
                seen[kind] = frame.locator("body").inner_text()
                assert marker in seen[kind], kind
            assert "本单位情况" in seen["with"] and "采集异常" not in seen["with"]
            assert "本周暂无文章刊发" in seen["without"] or "尚未在专栏刊发文章" in seen["without"]
            assert "采集异常" in seen["operator"] and "本单位情况" not in seen["operator"]

            page.fill("textarea[name=intro]", INTRO)
            page.click("#save-intro")
            page.wait_for_load_state()
            assert INTRO in page.frame_locator("#preview").locator("body").inner_text()
            page.fill("input[name=by]", "周干事")
            page.click("#approve")
            page.wait_for_load_state()
            assert page.locator("#issue-state").get_attribute("data-state") == "approved"
            assert "周干事" in page.locator("#approval").inner_text()
            previews = {who: raw_preview(page, base, week, who) for who in ("with", "without", "operator")}

        status = zhuanlan(cfg, db_url, "digest", "status", "--week", week)
        assert status.returncode == 0 and "approved" in status.stdout and "周干事（网页）" in status.stdout

        sent = zhuanlan(cfg, db_url, "digest", "send", "--week", week)
        assert sent.returncode == 0, sent.stderr
        mails = [_html(raw) for _, raw in handler.messages]
        for who, html in previews.items():
            assert mails.count(html) == 1, who  # the previewed HTML is what that recipient got, once
        assert all(INTRO in html for html in mails)
        count = len(handler.messages)
        again = zhuanlan(cfg, db_url, "digest", "send", "--week", week)
        assert again.returncode == 0 and "sent 0" in again.stdout
        assert len(handler.messages) == count
        late = zhuanlan(cfg, db_url, "digest", "approve", "--week", week)
        assert late.returncode == 1 and "已发送" in late.stderr


def _html(raw: bytes) -> str:
    part = parse(raw).get_body(("html",))
    assert part is not None
    return str(part.get_content()).rstrip("\n")


def _guid_of(db_url: str, title: str) -> str:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return session.scalars(select(Article.guid).where(Article.title == title)).one()
    finally:
        engine.dispose()


def test_demo_settles_the_unattributed_stories_and_approves_before_sending(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    args = ["demo", "--once", "--dir", str(demo), "--sample-port", "0", "--smtp-port", str(free_port())]
    first = subprocess.run(
        [str(ZHUANLAN), *args], capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert 'review = "required"' in (demo / "zhuanlan.toml").read_text(encoding="utf-8")
    settled = [line for line in first.stdout.splitlines() if "归属更正" in line]
    assert len(settled) == 3 and all("不属于任何单位" in line and "操作员 demo" in line for line in settled)
    assert "已审核通过" in first.stdout and "（操作员 demo" in first.stdout
    assert "approved by demo" in first.stdout
    assert len(list((demo / "outbox").glob("*.eml"))) > 1
    sent = re.search(r"digest \d{4}-W\d\d: sent (\d+),", first.stdout)
    assert sent and int(sent.group(1)) == len(list((demo / "outbox").glob("*.eml")))
    again = subprocess.run(  # the demo directory keeps its sample port: no --sample-port this time
        [str(ZHUANLAN), *args[:4], *args[6:]], capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False
    )
    assert again.returncode == 0 and "已发送过" in again.stdout and "sent 0" in again.stdout
