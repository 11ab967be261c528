"""A generated corpus of any size, loaded the fastest way each database has.

    python -m bench.corpus_gen --stories 1000000 --url postgresql://postgres@127.0.0.1:5432/zh_big

Every story has a unit (60), a source (120: sites and WeChat accounts), one appearance with its
zlib-compressed snapshot, a date spread over several years, 1–3 topic tags and, for a third of
them, the column. Bodies are 400–1500 characters of Chinese built from a vocabulary of
real-looking words of the genre (below; written for this generator), with a few rare words in a
known share of the stories so that searches can be common or rare. The search index rows are the
ones `pipeline.corpus.search_index` writes (the same `split_text`).

PostgreSQL: COPY into the tables (the GIN indexes of the search table dropped during the load and
rebuilt afterwards, which is how a bulk load should be done); SQLite: `executemany` in
transactions of 20,000 rows. The database is migrated first and must hold no stories.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from pipeline.corpus.db import make_engine, upgrade
from pipeline.corpus.textsplit import split_text

# Words of the genre (party-building, governance, the economy, livelihoods), two to four
# characters each, so that bigrams have a realistic spread: some in most stories, most in few.
VOCAB = (
    "学习 贯彻 全会 精神 党建 引领 工作 高质量 发展 科技 创新 自立自强 乡村 振兴 生态 文明 法治 建设 民生 保障 "
    "教育 强国 卫生 健康 交通 营商 环境 作风 全面从严治党 基层 党组织 党员 干部 理论 武装 调查 研究 改革 开放 "
    "产业 升级 数字 经济 绿色 低碳 文化 旅游 融合 社会 治理 安全 稳定 群众 服务 责任 担当 实干 落实 推进 "
    "统筹 协调 部署 要求 坚持 以人民为中心 深化 完善 机制 体系 能力 现代化 提升 水平 加强 组织 领导 "
    "扎实 开展 专题 调研 座谈会 会议 强调 指出 全市 全县 街道 社区 村 镇 企业 项目 投资 招商 引资 "
    "就业 收入 医疗 养老 托育 住房 供水 供电 道路 桥梁 公交 物流 港口 园区 平台 人才 队伍 培训 "
    "考核 评价 监督 执纪 问责 廉洁 纪律 规矩 清单 台账 整改 问题 短板 弱项 成效 经验 做法 典型 "
    "示范 带动 辐射 联动 共建 共享 共治 网格 志愿 服务队 文明实践 新时代 宣讲 红色 阵地 教育基地 "
    "农业 农村 农民 耕地 种业 合作社 电商 直播 特色 品牌 产品 市场 消费 外贸 出口 制造业 "
    "新能源 汽车 芯片 软件 大数据 人工智能 算力 网络 信息化 智慧 城市 更新 老旧小区 改造 "
    "防汛 抗旱 应急 消防 安全生产 隐患 排查 食品 药品 疫苗 公共卫生 体育 赛事 图书馆 博物馆 "
    "志愿者 退役军人 妇女 儿童 老年人 残疾人 困难群众 救助 帮扶 慰问 走访 恳谈 接访 信访 矛盾 调解 "
    "生态环境 污染 防治 蓝天 碧水 净土 垃圾分类 植树 造林 湿地 保护 修复 节能 减排 双碳"
).split()
CONNECTIVES = ("，", "，", "，", "、", "；")
# Rare words and the share of stories that hold them (search benchmarks query them).
RARE = {"粮食": 0.02, "河湖长制": 0.004, "非遗传承": 0.001}
TOPICS = (
    "党建",
    "乡村振兴",
    "营商环境",
    "科技创新",
    "生态文明",
    "民生",
    "法治",
    "文化",
    "安全",
    "教育",
    "卫生",
    "交通",
)
COLUMN = "学习贯彻全会精神"
UNIT_SUFFIXES = (
    "委组织部",
    "委宣传部",
    "发展改革委",
    "教育局",
    "科技局",
    "工业和信息化局",
    "公安局",
    "民政局",
    "司法局",
    "财政局",
)
PLACES = ("东城区", "西城区", "南湖区", "北山县", "临江市")  # "市" / "县" / "区" + a department: 50 + 10 units
FIRST_DAY = datetime(2019, 1, 1, tzinfo=UTC)
DAYS = 8 * 365  # eight years of stories
N_UNITS = 60
N_SOURCES = 120


@dataclass(frozen=True)
class Counts:
    stories: int
    seconds: float
    rows: dict[str, int]


def _sentence(rng: random.Random) -> str:
    words = rng.choices(VOCAB, k=rng.randint(6, 16))
    out = []
    for i, word in enumerate(words):
        out.append(word)
        if i and i % 4 == 0 and i < len(words) - 1:
            out.append(rng.choice(CONNECTIVES))
    return "".join(out) + "。"


def make_body(rng: random.Random, low: int = 400, high: int = 1500) -> str:
    """Paragraphs of sentences, `low`–`high` characters, rare words in their share of stories."""
    target = rng.randint(low, high)
    paragraphs: list[str] = []
    size = 0
    while size < target:
        para = "".join(_sentence(rng) for _ in range(rng.randint(2, 5)))
        paragraphs.append(para)
        size += len(para) + 1
    body = "\n".join(paragraphs)
    for word, share in RARE.items():
        if rng.random() < share:
            cut = rng.randrange(len(body))
            body = body[:cut] + f"，{word}工作" + body[cut:]
    return body


def unit_names() -> list[str]:
    names = [place + suffix for place in PLACES for suffix in UNIT_SUFFIXES]
    return names + [f"临江市第{i + 1}中学" for i in range(N_UNITS - len(names))]


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def stories(n: int, seed: int = 20) -> Iterator[dict[str, Any]]:
    """The generated stories, ids 1..n; each a dict of everything the loaders write."""
    rng = random.Random(seed)
    for i in range(1, n + 1):
        body = make_body(rng)
        title = "".join(rng.choices(VOCAB, k=rng.randint(3, 7)))[:30]
        published = FIRST_DAY + timedelta(days=rng.randrange(DAYS), seconds=rng.randrange(86400))
        unit = rng.randrange(N_UNITS) + 1
        source = rng.randrange(N_SOURCES) + 1
        url = f"https://www{source}.example.gov.cn/art/{published:%Y/%m}/{i}.html"
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{body}</p></body></html>"
        raw = page.encode()
        yield {
            "id": i,
            "title": title,
            "body": body,
            "published": published,
            "unit": unit,
            "source": source,
            "url": url,
            "column": COLUMN if rng.random() < 0.33 else None,
            "topics": rng.sample(range(1, len(TOPICS) + 1), rng.randint(1, 3)),
            "hash": hashlib.sha256(body.encode()).hexdigest(),
            "snapshot": zlib.compress(raw, 6),
            "snapshot_sha": hashlib.sha256(raw).hexdigest(),
            "size": len(raw),
        }


def _fixed_rows() -> dict[str, list[tuple[Any, ...]]]:
    units = [(i + 1, name, None, "[]", i) for i, name in enumerate(unit_names())]
    sources = [
        (i, f"src{i}", "wechat" if i % 3 == 0 else "site", f"https://www{i}.example.gov.cn/", (i % N_UNITS) + 1)
        for i in range(1, N_SOURCES + 1)
    ]
    tags = [(i + 1, "topic", name) for i, name in enumerate(TOPICS)]
    tags.append((len(TOPICS) + 1, "column", COLUMN))
    return {"units": units, "sources": sources, "tags": tags}


_FIXED_SQL = {
    "units": "INSERT INTO units (id, name, short_name, aliases, sort_order) VALUES ({})",
    "sources": "INSERT INTO sources (id, key, kind, url, unit_id, options, enabled, status, consecutive_failures) "
    "VALUES ({}, '{{}}', true, 'ok', 0)",
    "tags": "INSERT INTO tags (id, kind, name) VALUES ({})",
}
_ARTICLE_COLS = (
    'id, guid, title, author, positions, authors, unit_id, unit_from, "column", column_reason, corrected, '
    "published_at, summary, body_html, body_text, content_hash, state, first_appearance_id, created_at, updated_at"
)
_APPEARANCE_COLS = (
    "id, article_id, source_id, canonical_key, url, title, published_at, fetched_at, http_status, "
    "content_hash, is_original, state, in_column, meta, snapshot_id"
)
_SNAPSHOT_COLS = "id, appearance_id, sha256, url, fetched_at, http_status, headers, encoding, content, size"


def _rows(story: dict[str, Any], sqlite: bool) -> dict[str, list[tuple[Any, ...]]]:
    i = story["id"]
    when: Any = _stamp(story["published"]) if sqlite else story["published"]
    fetched: Any = (
        _stamp(story["published"] + timedelta(hours=2)) if sqlite else story["published"] + timedelta(hours=2)
    )
    true: Any = 1 if sqlite else True
    col = story["column"]
    body = story["body"]
    article = (
        i, f"g{i:012d}", story["title"], "张明", "[]", '[{"name": "张明", "positions": []}]', story["unit"],
        "byline", col, "title" if col else None, "{}", when, body[:80], f"<p>{body}</p>", body, story["hash"],
        "live", i, fetched, fetched,
    )  # fmt: skip
    appearance = (
        i, i, story["source"], story["url"], story["url"], story["title"], when, fetched, 200, story["hash"],
        true, "ok", true, "{}", i,
    )  # fmt: skip
    snapshot = (
        i,
        i,
        story["snapshot_sha"],
        story["url"],
        fetched,
        200,
        "{}",
        "utf-8",
        story["snapshot"],
        story["size"],
    )
    tags = [(i, t, "rule", 1.0) for t in story["topics"]]
    if col:
        tags.append((i, len(TOPICS) + 1, "rule", 1.0))
    search = (i, split_text(story["title"]), split_text(body))
    return {
        "articles": [article],
        "appearances": [appearance],
        "snapshots": [snapshot],
        "tags": tags,
        "search": [search],
    }


def _check_empty(engine: Engine) -> None:
    with engine.connect() as conn:
        if conn.execute(text("SELECT count(*) FROM articles")).scalar_one():
            raise SystemExit("the database already holds stories: give an empty database")


def load_sqlite(engine: Engine, n: int, seed: int = 20, chunk: int = 20_000) -> Counts:
    start = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA foreign_keys=OFF")
        # A bulk load into a file nobody reads yet: no fsync per commit, and a large page cache
        # for the FTS5 segment merges (1 GiB).
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA cache_size=-1048576")
        fixed = _fixed_rows()
        for table, rows in fixed.items():
            marks = ", ".join("?" * len(rows[0]))
            cur.executemany(_FIXED_SQL[table].format(marks).replace("true", "1"), rows)
        raw.commit()
        sqls = {
            "articles": f"INSERT INTO articles ({_ARTICLE_COLS}) VALUES ({', '.join('?' * 20)})",
            "appearances": f"INSERT INTO appearances ({_APPEARANCE_COLS}) VALUES ({', '.join('?' * 15)})",
            "snapshots": f"INSERT INTO snapshots ({_SNAPSHOT_COLS}) VALUES ({', '.join('?' * 10)})",
            "tags": "INSERT INTO article_tags (article_id, tag_id, origin, weight) VALUES (?, ?, ?, ?)",
            "search": "INSERT INTO article_fts (rowid, title, body) VALUES (?, ?, ?)",
        }
        counts = dict.fromkeys(sqls, 0)
        buffer: dict[str, list[tuple[Any, ...]]] = {k: [] for k in sqls}
        for story in stories(n, seed):
            for key, rows in _rows(story, sqlite=True).items():
                buffer[key].extend(rows)
            if story["id"] % chunk == 0 or story["id"] == n:
                for key, rows in buffer.items():
                    cur.executemany(sqls[key], rows)
                    counts[key] += len(rows)
                    rows.clear()
                raw.commit()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return Counts(n, time.perf_counter() - start, counts)


def load_postgresql(engine: Engine, n: int, seed: int = 20, chunk: int = 20_000) -> Counts:
    start = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # The rows are consistent by construction, and appearances, snapshots and articles refer to
        # each other in a circle: foreign-key triggers off for this load's session only.
        cur.execute("SET session_replication_role = replica")
        fixed = _fixed_rows()
        for table, rows in fixed.items():
            marks = ", ".join(["%s"] * len(rows[0]))
            cur.executemany(_FIXED_SQL[table].format(marks), rows)
        cur.execute("DROP INDEX IF EXISTS ix_article_search_title")
        cur.execute("DROP INDEX IF EXISTS ix_article_search_body")
        cur.execute("CREATE TEMP TABLE search_load (id integer, t text, b text)")
        raw.commit()
        copies = {
            "articles": f"COPY articles ({_ARTICLE_COLS}) FROM STDIN",
            "appearances": f"COPY appearances ({_APPEARANCE_COLS}) FROM STDIN",
            "snapshots": f"COPY snapshots ({_SNAPSHOT_COLS}) FROM STDIN",
            "tags": "COPY article_tags (article_id, tag_id, origin, weight) FROM STDIN",
            "search": "COPY search_load (id, t, b) FROM STDIN",
        }
        counts = dict.fromkeys(copies, 0)
        buffer: dict[str, list[tuple[Any, ...]]] = {k: [] for k in copies}
        for story in stories(n, seed):
            for key, rows in _rows(story, sqlite=False).items():
                buffer[key].extend(rows)
            if story["id"] % chunk == 0 or story["id"] == n:
                for key, rows in buffer.items():
                    with cur.copy(copies[key]) as copy:
                        for row in rows:
                            copy.write_row(row)
                    counts[key] += len(rows)
                    rows.clear()
                cur.execute(
                    "INSERT INTO article_search (article_id, title_tsv, body_tsv) "
                    "SELECT id, to_tsvector('simple', t), to_tsvector('simple', b) FROM search_load"
                )
                cur.execute("TRUNCATE search_load")
                raw.commit()
        cur.execute("SET maintenance_work_mem = '2GB'")
        cur.execute("CREATE INDEX ix_article_search_title ON article_search USING gin (title_tsv)")
        cur.execute("CREATE INDEX ix_article_search_body ON article_search USING gin (body_tsv)")
        for table in ("units", "sources", "tags", "articles", "appearances", "snapshots"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
        cur.execute("SET session_replication_role = DEFAULT")
        raw.commit()
        raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        cur.execute("VACUUM ANALYZE")
    finally:
        raw.close()
    return Counts(n, time.perf_counter() - start, counts)


def load(url: str, n: int, seed: int = 20) -> Counts:
    engine = make_engine(url)
    try:
        upgrade(engine)
        _check_empty(engine)
        if engine.dialect.name == "postgresql":
            return load_postgresql(engine, n, seed)
        return load_sqlite(engine, n, seed)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, required=True, help="how many stories to generate")
    parser.add_argument("--url", required=True, help="database URL (sqlite:///… or postgresql://…), migrated here")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    if args.stories < 1:
        parser.error("--stories must be at least 1")
    counts = load(args.url, args.stories, args.seed)
    print(json.dumps({"stories": counts.stories, "seconds": round(counts.seconds, 1), "rows": counts.rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
