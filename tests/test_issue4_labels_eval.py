"""Issue 4: label parsing bugs found in integration, and `zhuanlan eval` targets (verdicts, --strict)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.evaluation.run import main as eval_main
from crawler.evaluation.sites import SiteEval, Verdict, evaluate, verdicts
from crawler.parsing.bylines import find_byline
from crawler.parsing.site_article import extract_article

ROOT = Path(__file__).resolve().parent.parent
URL = "http://www.example.gov.cn/art/2025/11/20/art_1_1.html"
BODY = "全会提出，要坚持以人民为中心的发展思想，扎实推动各项工作落地见效。" * 6


def page(info: str, first_paragraph: str = "") -> str:
    first = f"<p>{first_paragraph}</p>" if first_paragraph else ""
    return (
        "<html><head><meta charset='utf-8'><title>市财政局深入学习贯彻全会精神</title></head><body>"
        "<h1>市财政局深入学习贯彻全会精神</h1>"
        f"<div class='info'>{info}</div>"
        f"<div id='zoom'>{first}<p>{BODY}</p><p>{BODY}</p></div></body></html>"
    )


@pytest.mark.parametrize(
    ("info", "author"),
    [
        ("作者：陈晓峰 浏览次数：128 发布时间：2025-11-20", "陈晓峰"),  # two labelled spans, one space apart
        ("作者：陈晓峰 浏览次数 128", "陈晓峰"),
        ("作者：陈晓峰 点击数：3", "陈晓峰"),
        ("作者：陈晓峰 来源：市财政局", "陈晓峰"),
        ("作者：陈晓峰 字号：大 中 小", "陈晓峰"),
        ("作者：陈晓峰 李华 发布时间：2025-11-20", "陈晓峰 李华"),  # two names stay two names
        ("作者：陈晓峰、李华", "陈晓峰 李华"),
    ],
)
def test_author_label_stops_at_the_next_label(info: str, author: str) -> None:
    article = extract_article(page(info), URL)
    assert article.author == author
    assert article.method["author"] == "label 作者"


def test_date_and_source_still_read_beside_the_author() -> None:
    article = extract_article(page("作者：陈晓峰 浏览次数：128 来源：市财政局 发布时间：2025-11-20 09:30"), URL)
    assert article.author == "陈晓峰"
    assert article.source_label == "市财政局"
    assert article.published_at is not None and article.published_at.isoformat() == "2025-11-20T09:30:00+08:00"


@pytest.mark.parametrize(
    "line",
    [
        "市财政局党组成员、总会计师　冯立群",  # ideographic space before the name
        "　　市财政局党组成员、总会计师　冯立群",  # and an indented paragraph
        "市财政局党组成员、总会计师 冯立群",
    ],
)
def test_byline_with_chief_accountant_is_found(line: str) -> None:
    found = find_byline(f"\n{line}\n{BODY}")
    assert found is not None
    assert found.endswith("冯立群") and not found.startswith("　")
    article = extract_article(page("发布时间：2025-11-20", line), URL)
    assert article.byline is not None and article.byline.endswith("冯立群")
    assert article.author == "冯立群" and article.method["author"] == "byline"


def test_byline_needs_a_position() -> None:
    assert find_byline("全会精神 冯立群") is None
    assert find_byline("市财政局总经济师　王立") == "市财政局总经济师　王立"


# --- eval targets ------------------------------------------------------------------------


def write_corpus(root: Path, pages: dict[str, tuple[str, dict[str, str]]]) -> Path:
    """A tiny corpus in the eval layout: sites/pages/NAME.html + sites/groundtruth/NAME.gt.json."""
    sites = root / "sites"
    (sites / "pages").mkdir(parents=True)
    (sites / "groundtruth").mkdir()
    for name, (html, gt) in pages.items():
        (sites / "pages" / f"{name}.html").write_text(html, encoding="utf-8")
        (sites / "groundtruth" / f"{name}.gt.json").write_text(json.dumps(gt, ensure_ascii=False), encoding="utf-8")
    return root


def good_pages() -> dict[str, tuple[str, dict[str, str]]]:
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for n in range(3):
        html = page(f"作者：陈晓峰 浏览次数：{n} 发布时间：2025-11-2{n}")
        gt = {
            "url": URL,
            "title": "市财政局深入学习贯彻全会精神",
            "date": f"2025-11-2{n}",
            "author": "陈晓峰",
            "cleaned": f"{BODY}\n{BODY}",
        }
        out[f"page{n}"] = (html, gt)
    return out


def test_targets_met_on_good_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_corpus(tmp_path, good_pages())
    result = evaluate(corpus / "sites")
    assert len(result.rows) == 3 and result.mojibake == [] and result.pages == 3
    found = verdicts(result)
    assert all(v.ok for v in found), found
    assert eval_main(corpus, strict=True) == 0
    out = capsys.readouterr().out
    assert "mojibake: 0 of 3 pages" in out
    assert "target MET    mean body F1 >= 0.95" in out
    assert "target MET    dates exact >= 95%" in out
    assert "all targets met" in out


def test_strict_exits_1_when_a_target_is_missed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pages = good_pages()
    html, gt = pages["page0"]
    pages["page0"] = (html, {**gt, "date": "2024-01-01", "cleaned": "完全不同的一段文字，与页面正文毫无关系。"})
    corpus = write_corpus(tmp_path, pages)
    assert eval_main(corpus, strict=False) == 0  # reports only
    assert eval_main(corpus, strict=True) == 1
    out = capsys.readouterr().out
    assert "target MISSED mean body F1 >= 0.95" in out
    assert "target MISSED dates exact >= 95%: 66.7%" in out


def test_mojibake_is_counted_and_misses_its_target() -> None:
    result = SiteEval(rows=[], mojibake=["bad_page"], pages=4)
    found = {v.target: v for v in verdicts(result)}
    assert found["0 mojibake"] == Verdict("0 mojibake", False, "1 of 4 pages: bad_page")
    # no labelled page at all: the body and date targets cannot be met
    assert not found["mean body F1 >= 0.95"].ok and not found["dates exact >= 95%"].ok


def test_garbled_page_is_counted(tmp_path: Path) -> None:
    pages = good_pages()
    # UTF-8 bytes mis-declared as Latin-1 on the page and read that way: what mojibake looks like
    garbled = page("发布时间：2025-11-20").encode("utf-8").decode("latin-1")
    pages["garbled"] = (garbled, {"url": URL, "date": "2025-11-20"})
    result = evaluate(write_corpus(tmp_path, pages) / "sites")
    assert result.mojibake == ["garbled"]


def test_eval_command_strict(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, good_pages())
    proc = subprocess.run(
        [sys.executable, "-m", "zhuanlan_cli", "eval", "--corpus", str(corpus), "--strict"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "target MET    body bigram F1 better than trafilatura alone: 1.000 vs" in proc.stdout
    assert "MISSED" not in proc.stdout
