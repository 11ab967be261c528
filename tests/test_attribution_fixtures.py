"""Attribution on the byline fixture set (tests/fixtures/attribution): every form, as a WeChat page
and as a unit-website page, through the same path as `zhuanlan extract --source` and the pipeline;
and the installed `zhuanlan` command printing the `attribution` block."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.tagging.evaluate import DEFAULT_FIXTURES, PageResult, evaluate

ROOT = Path(__file__).resolve().parent.parent
ZHUANLAN = Path(sys.executable).with_name("zhuanlan")  # the console script the project installs
CASES = sorted(p.name for p in DEFAULT_FIXTURES.iterdir() if (p / "case.json").is_file())


@pytest.fixture(scope="module")
def results(now: datetime) -> dict[tuple[str, str], PageResult]:
    return {(r.case, r.page): r for r in evaluate(DEFAULT_FIXTURES, now)}


@pytest.fixture(scope="module")
def now() -> datetime:
    return datetime.fromisoformat("2026-11-26T10:00:00+08:00")


def test_the_set_covers_every_form_on_both_kinds_of_page(results: dict[tuple[str, str], PageResult]) -> None:
    assert len(CASES) >= 25
    assert {page for _, page in results} == {"wechat", "site"}
    assert len(results) == 2 * len(CASES)
    # the truth holds each provenance, unattributed album pages and several-author pages
    expected = [r.expected for r in results.values()]
    assert {e["unit_from"] for e in expected} == {"byline", "label", "title", "author_field", "source_owner", None}
    assert any(len(e["authors"]) >= 2 for e in expected)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("page", ["wechat", "site"])
def test_unit_provenance_and_authors(results: dict[tuple[str, str], PageResult], case: str, page: str) -> None:
    result = results[(case, page)]
    assert result.got == result.expected, f"{case} {page}"


def _extract(case: str, page: str, *, source: str | None = None) -> subprocess.CompletedProcess[str]:
    spec = json.loads((DEFAULT_FIXTURES / case / "case.json").read_text("utf-8"))[page]
    args = [str(ZHUANLAN), "--config", str(DEFAULT_FIXTURES / "zhuanlan.toml"), "extract"]
    args += [str(DEFAULT_FIXTURES / case / f"{page}.html"), "--url", spec["url"], "--source", source or spec["source"]]
    if spec.get("content_type"):
        args += ["--content-type", spec["content_type"]]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


@pytest.mark.parametrize(
    ("case", "page"),
    [
        ("07_top_guapai_second_name", "wechat"),
        ("20_reporter_and_correspondent", "site"),
        ("26_nothing", "wechat"),
        ("24_county_configured_ganquan_most_specific", "site"),  # a GBK page
        ("36_title_bracket_lead_in_after_column", "wechat"),  # only the headline names the unit
    ],
)
def test_the_installed_command_prints_the_attribution(case: str, page: str) -> None:
    assert ZHUANLAN.is_file(), f"{ZHUANLAN} missing: `make install` installs the console script"
    proc = _extract(case, page)
    assert proc.returncode == 0, proc.stderr
    fields = json.loads(proc.stdout)
    expected = json.loads((DEFAULT_FIXTURES / case / "case.json").read_text("utf-8"))[page]["expected"]
    assert fields["attribution"] == expected
    assert set(fields["attribution"]) == {"unit", "unit_from", "authors", "positions"}


def test_the_same_page_on_another_source_falls_back_to_that_source_only_on_a_site() -> None:
    # the nothing-on-the-page case: on a unit's site its owner, on the album nobody
    site = json.loads(_extract("26_nothing", "wechat", source="czj_site").stdout)["attribution"]
    assert (site["unit"], site["unit_from"]) == ("临溪市财政局", "source_owner")
    album = json.loads(_extract("26_nothing", "site", source="gongwei_album").stdout)["attribution"]
    assert (album["unit"], album["unit_from"]) == (None, None)


def test_an_unknown_source_is_a_configuration_error() -> None:
    proc = _extract("01_top_unit_positions_name", "wechat", source="nope")
    assert proc.returncode == 2
    assert "no source with key 'nope'" in proc.stderr


def test_every_provenance_has_a_name_on_the_story_page() -> None:
    from archive.views.review import UNIT_FROM_NAMES
    from pipeline.tagging.attribution import UNIT_FROM

    assert set(UNIT_FROM_NAMES) == set(UNIT_FROM)
    assert UNIT_FROM_NAMES["title"] == "标题"
