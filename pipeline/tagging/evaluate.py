"""`make eval`, attribution section: units and authors on the project's own byline fixtures.

Owns reading the fixture set (tests/fixtures/attribution: one folder per byline form, a WeChat
page and a unit-website page each, `case.json` with the truth, one `zhuanlan.toml`), computing
each page's attribution exactly as `zhuanlan extract --source` does (`pipeline.tag
.extract_attribution`), and the verdicts: every unit right, authors right on ≥ 97 % of pages.

Reads files only; writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawler.parsing.extract import extract_page
from pipeline.tag import extract_attribution
from pipeline.tagging.rules import Vocabulary
from zhuanlan_config import load_config

DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "attribution"
TARGET_UNITS = 1.0
TARGET_AUTHORS = 0.97
PAGES = (("wechat", "wechat.html"), ("site", "site.html"))


@dataclass(frozen=True)
class PageResult:
    case: str
    page: str  # wechat | site
    expected: dict[str, Any]
    got: dict[str, Any]

    @property
    def unit_ok(self) -> bool:
        return self.got.get("unit") == self.expected.get("unit")

    @property
    def unit_from_ok(self) -> bool:
        return self.got.get("unit_from") == self.expected.get("unit_from")

    @property
    def authors_ok(self) -> bool:
        return list(self.got.get("authors") or []) == list(self.expected.get("authors") or [])


def evaluate(fixtures: Path, now: datetime | None = None) -> list[PageResult]:
    """The attribution of every page of the fixture set, with its truth."""
    config = load_config(fixtures / "zhuanlan.toml")
    vocab = Vocabulary.from_config(config)
    moment = now or datetime.now(UTC)
    results: list[PageResult] = []
    for case_dir in sorted(p for p in fixtures.iterdir() if (p / "case.json").is_file()):
        case = json.loads((case_dir / "case.json").read_text("utf-8"))
        for key, filename in PAGES:
            spec = case.get(key)
            if not isinstance(spec, dict) or not (case_dir / filename).is_file():
                continue
            fields = extract_page(
                (case_dir / filename).read_bytes(), spec["url"], content_type=spec.get("content_type")
            )
            got: dict[str, Any] = {"state": fields.get("state")}
            if fields.get("state") == "ok":
                got = extract_attribution(fields, config.source(spec["source"]), vocab, moment)["attribution"]
            results.append(PageResult(case_dir.name, key, spec["expected"], got))
    return results


def _share(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def main(fixtures: Path = DEFAULT_FIXTURES) -> int:
    """Print one line per page that is wrong, the shares and the verdicts; the number of targets missed."""
    if not (fixtures / "zhuanlan.toml").is_file():
        print(f"no attribution fixtures at {fixtures}: nothing to evaluate")
        return 1
    results = evaluate(fixtures)
    for r in results:
        if not (r.unit_ok and r.authors_ok and r.unit_from_ok):
            print(f"XX   {r.case:36} {r.page:6} expected {json.dumps(r.expected, ensure_ascii=False)}")
            print(f"     {'':36} {'':6} got      {json.dumps(r.got, ensure_ascii=False)}")
    units = _share([r.unit_ok for r in results])
    authors = _share([r.authors_ok for r in results])
    provenance = _share([r.unit_from_ok for r in results])
    print(
        f"attribution on {len(results)} pages ({len({r.case for r in results})} byline forms): "
        f"unit {units:.1%}  unit_from {provenance:.1%}  authors {authors:.1%}"
    )
    missed = 0
    for target, share, goal in (("units right", units, TARGET_UNITS), ("authors right", authors, TARGET_AUTHORS)):
        ok = bool(results) and share >= goal
        missed += 0 if ok else 1
        print(f"target {'MET   ' if ok else 'MISSED'} {target} >= {goal:.0%}: {share:.1%}")
    return missed
