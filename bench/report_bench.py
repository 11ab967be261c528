"""Period reports: a year of a 60-unit column as the 统计表 (xlsx), the 汇编 (docx) and the 明细 (csv).

A temporary SQLite corpus holds a year (52 weeks) of the column at about 15 articles a week from
60 units (some silent), bodies of 1,200–3,600 characters in 4–12 paragraphs, one in five stories
also reposted on a unit site. Measured (median of 3): reading the report (`load_report`: query
and counts), and rendering each file from the loaded report (`feeds.report_files.render`). The
baseline, in the same run, writes the same 明细 rows with the csv module into memory.
"""

from __future__ import annotations

import csv
import io
import random
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, update

from bench.common import Timing, make_text, measure
from feeds.report import Report, detail_rows, load_report
from feeds.report_files import Format, render
from pipeline.corpus.db import make_engine, session_factory, upgrade
from pipeline.corpus.models import Appearance, Article, Source, Unit
from zhuanlan_config import parse_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

TITLE = "Reports: a year of a 60-unit column as xlsx (统计表), docx (汇编) and csv (明细)"
SHANGHAI = ZoneInfo("Asia/Shanghai")
COLUMN = "学习贯彻党的二十届四中全会精神"
N_UNITS = 60
WEEKS = 52
PER_WEEK = 15
FIRST_DAY = date(2026, 1, 5)  # a Monday
POSITIONS = (("党组书记", "局长"), ("副局长",), ("党组成员", "副主任"), ("机关党委书记",), ("科员",), ("主任",))


def make_corpus(sessions: sessionmaker[Session], rng: random.Random) -> int:
    """Insert the corpus with bulk statements; returns the number of stories."""
    units = [{"id": i + 1, "name": f"张掖市第{i + 1}局", "sort_order": i, "aliases": []} for i in range(N_UNITS)]
    active = list(range(1, N_UNITS - 4))  # four silent units
    now = datetime.combine(FIRST_DAY + timedelta(weeks=WEEKS), datetime.min.time(), tzinfo=SHANGHAI)
    articles: list[dict[str, Any]] = []
    appearances: list[dict[str, Any]] = []
    n = 0
    for week in range(WEEKS):
        for _ in range(PER_WEEK + rng.randint(-3, 3)):
            n += 1
            published = datetime.combine(
                FIRST_DAY + timedelta(weeks=week, days=rng.randint(0, 6)), datetime.min.time(), tzinfo=SHANGHAI
            ) + timedelta(minutes=rng.randint(7 * 60, 22 * 60))
            paragraphs = [make_text(rng, rng.randint(150, 400)) for _ in range(rng.randint(4, 12))]
            positions = rng.choice(POSITIONS)
            articles.append(
                {
                    "id": n,
                    "guid": f"{n:032x}",
                    "title": make_text(rng, 20)[:24],
                    "author": "王立新",
                    "positions": list(positions),
                    "authors": [{"name": "王立新", "positions": list(positions)}],
                    "unit_id": rng.choice(active) if rng.random() > 0.01 else None,
                    "column": COLUMN,
                    "published_at": published,
                    "body_html": "",
                    "body_text": "\n".join(paragraphs),
                    "content_hash": f"{n:064x}",
                    "state": "live",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            appearances.append(
                {
                    "article_id": n, "source_id": 1, "canonical_key": f"wx:{n}",
                    "url": f"https://mp.weixin.qq.com/s?__biz=MzA&mid={n}&idx=1", "published_at": published,
                    "fetched_at": now, "content_hash": f"{n:064x}", "is_original": True, "meta": {},
                }
            )  # fmt: skip
            if rng.random() < 0.2:
                appearances.append(
                    {
                        "article_id": n, "source_id": 2, "canonical_key": f"site:{n}",
                        "url": f"https://unit.example.gov.cn/art/{n}.html", "published_at": published,
                        "fetched_at": now, "content_hash": f"{n:064x}", "is_original": False, "meta": {},
                    }
                )  # fmt: skip
    with sessions() as session, session.begin():
        session.execute(insert(Unit), units)
        session.add(Source(id=1, key="album", kind="wechat_album", url="https://mp.weixin.qq.com/", options={}))
        session.add(Source(id=2, key="site", kind="site_column", url="https://unit.example.gov.cn/", options={}))
        session.flush()
        session.execute(insert(Article), articles)
        session.execute(insert(Appearance), appearances)
        session.flush()
        session.execute(
            update(Article).values(first_appearance_id=Article.id).execution_options(synchronize_session=False)
        )
    return n


def csv_baseline(report: Report) -> int:
    """The 明细 rows with the csv module into memory: no BOM, no neutralizing, no file."""
    text = io.StringIO()
    writer = csv.writer(text)
    for row in detail_rows(report):
        writer.writerow(row)
    return len(text.getvalue())


def run(seed: int = 19) -> list[str]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config: Config = parse_config(
            {
                "database_url": f"sqlite:///{root / 'bench.db'}",
                "data_dir": str(root / "data"),
                "public_dir": str(root / "public"),
                "units": [{"name": f"张掖市第{i + 1}局"} for i in range(N_UNITS)],
                "columns": [{"name": COLUMN}],
            },
            base_dir=root,
        )
        engine = make_engine(config.database_url)
        try:
            upgrade(engine)
            sessions = session_factory(engine)
            n_articles = make_corpus(sessions, rng)
            last_day = FIRST_DAY + timedelta(weeks=WEEKS, days=-1)

            def load() -> Report:
                with sessions() as session:
                    return load_report(session, config, COLUMN, FIRST_DAY, last_day)

            report = load()
            sizes: dict[str, int] = {}

            def timed(fmt: Format) -> Timing:
                return measure(lambda: sizes.__setitem__(fmt, len(render(report, fmt))), repeat=3)

            baseline = measure(lambda: csv_baseline(report), repeat=3)
            loading = measure(load, repeat=3)
            xlsx, docx, csv_file = timed("xlsx"), timed("docx"), timed("csv")
        finally:
            engine.dispose()
    chars = sum(len(a.body_text) for a in report.compiled)

    def row(name: str, t: Timing, size: str = "") -> str:
        return f"| {name} | {t.fmt()} | {t.median / baseline.median:.1f}x | {size} |"

    return [
        f"Corpus: {n_articles} column stories of {sum(1 for u in report.units if u.count)} of {N_UNITS} units "
        f"over {WEEKS} weeks ({FIRST_DAY} to {last_day}) in SQLite, {len(report.unattributed)} unattributed; "
        f"{chars / 1e6:.2f} million characters of text.",
        "",
        "| step | time | vs baseline | file |",
        "|---|---|---|---|",
        row("baseline: the 明细 rows with the csv module, in memory", baseline),
        row("`load_report`: query, links, counts, ranks", loading),
        row("csv 明细 (`render`, BOM, neutralized cells)", csv_file, f"{sizes['csv'] / 1024:.0f} KiB"),
        row("xlsx 统计表 + 明细 (openpyxl)", xlsx, f"{sizes['xlsx'] / 1024:.0f} KiB"),
        row(
            "docx 汇编: cover, TOC field, every article in full (python-docx)", docx, f"{sizes['docx'] / 1024:.0f} KiB"
        ),
        "",
    ]


if __name__ == "__main__":
    print("\n".join(run()))
