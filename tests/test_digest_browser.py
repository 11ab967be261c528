"""One recipient's digest HTML rendered in headless Chromium at a phone and a desktop width:
the Chinese text is there and visible, nothing overflows sideways on the phone, the column
stays at most 600px on the desktop, and the screenshots really show text (not a blank page)."""

from __future__ import annotations

import base64
import struct
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feeds.digest import DigestRecipient, render_digest
from feeds.selection import load_digest_data
from pipeline.corpus.models import Recipient
from tests.test_digest_flaky import KJ, seed
from tests.test_digest_send import SEND_TIME, WEEK
from tests.test_feeds_factory import BASE_URL, make_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

# Counts the pixels of a PNG (given as a data URL) that are clearly darker than the page
# background (#f5f5f5) and the white card: text, links, headings, rules.
COUNT_INK = """async (url) => {
  const img = new Image();
  img.src = url;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0, red = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
    if (r + g + b < 450) ink++;
    if (r > 150 && g < 80 && b < 80) red++;
  }
  return {width: canvas.width, height: canvas.height, ink, red};
}"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def ink(browser: Any, png: bytes) -> dict[str, int]:
    """Decode the screenshot in a blank page of the browser (a canvas) and count its dark pixels."""
    page = browser.new_page()
    try:
        result: dict[str, int] = page.evaluate(COUNT_INK, "data:image/png;base64," + base64.b64encode(png).decode())
        return result
    finally:
        page.close()


def test_digest_renders_readably_on_a_phone_and_a_desktop(
    chromium: Any, sessions: sessionmaker[Session], now: datetime, tmp_path: Path
) -> None:
    seed(sessions, now)
    config = make_config(tmp_path, digest={"column_start": "2026-11-01"})
    with sessions() as session:
        data = load_digest_data(session, WEEK, config, SEND_TIME)
        recipient = session.query(Recipient).filter_by(email=KJ).one()
        who = DigestRecipient.from_model(recipient)
    rendered = render_digest(data, who, operator=False, base_url=BASE_URL)

    shots: dict[str, bytes] = {}
    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page = chromium.new_page(viewport=viewport)
        try:
            # set_content: no network; the mail has no external resources anyway.
            page.set_content(rendered.html, wait_until="load")
            text = page.inner_text("body")
            assert "市科学技术局" in text  # the recipient's unit
            assert "本单位情况：市科学技术局" in text
            assert "让科技成果走出实验室" in text and "扎实推进乡村全面振兴" in text  # article titles
            assert "赵明远同志：您好！" in text
            assert "本周未刊发单位" in text and "累计刊发排名" in text and "投稿" not in text
            # The ranking is a real 4-column table, one row per unit, ranked.
            headers = page.evaluate("[...document.querySelectorAll('th')].map(th => th.innerText.trim())")
            assert headers == ["排名", "单位", "本周", "累计"]
            rows = page.evaluate(
                "[...document.querySelectorAll('tr')].filter(tr => tr.cells.length === 4 && !tr.querySelector('th'))"
                ".map(tr => [...tr.cells].map(c => c.innerText.trim()))"
            )
            assert [r[1] for r in rows] == [u.name for u in data.ranking] and rows[0][0] == "1"
            # Styles are set once on the outer cell and inherited (that keeps the mail small).
            font = page.evaluate("getComputedStyle(document.querySelector('h2 + p')).fontFamily")
            assert "PingFang SC" in font
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= viewport["width"] + 1, f"{name}: horizontal overflow ({scroll_width}px)"
            card = page.evaluate(
                "document.querySelector('table[style*=\"max-width:600px\"]').getBoundingClientRect().width"
            )
            assert card <= 600 and card >= min(600, viewport["width"]) - 2 * 12 - 1  # full width minus padding
            # Every article link is visible on screen and inside the viewport's width.
            for box in page.evaluate(
                "[...document.querySelectorAll('a')].map(a => {const r = a.getBoundingClientRect();"
                " return {left: r.left, right: r.right, w: r.width, h: r.height}})"
            ):
                assert box["w"] > 0 and box["h"] > 0 and box["left"] >= 0 and box["right"] <= viewport["width"] + 1
            path = tmp_path / f"digest-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            shots[name] = path.read_bytes()
        finally:
            page.close()

    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        png = shots[name]
        width, height = png_size(png)
        assert width == viewport["width"] and height > viewport["height"]  # the full mail, not one screen
        counts = ink(chromium, png)
        assert (counts["width"], counts["height"]) == (width, height)
        # Text covers a real share of the page (a blank or tofu-free-but-empty page has ~0), and the
        # red title and section headings are drawn.
        assert counts["ink"] > 0.01 * width * height, f"{name}: {counts}"
        assert counts["red"] > 500, f"{name}: {counts}"
