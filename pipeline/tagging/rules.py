"""Tagging rules: pure functions from an article's text and labels to its `Tags`.

Owns: putting a record's tags together — its attribution (`pipeline.tagging.attribution`: unit with its
provenance, authors with their positions, read by the one byline reader of
`crawler.parsing.bylines`), its column membership, topic scores and jieba TF-IDF keywords.

Must not touch the database, Scrapy or the clock: the tag pipeline and the retag command are
the shells around these functions, and `pipeline.corpus.tagstore` writes the result.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import logging
import marshal
import os
import re
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from crawler.parsing.positions import HAN
from pipeline.record import Record, Tags
from pipeline.tagging.attribution import attribute, column_membership
from pipeline.tagging.vocabulary import UnitMatcher, Vocabulary

__all__ = ["UnitMatcher", "Vocabulary", "compute_tags", "score_topics", "tag_record", "top_keywords"]

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import rjieba

# --- topics -------------------------------------------------------------------------

TITLE_FACTOR = 3.0


def score_topics(title: str, body_text: str, vocab: Vocabulary) -> dict[str, float]:
    """Topic → score: each phrase occurrence adds the phrase's weight (a title hit counts 3×).

    Topics below their `min_score` are left out; order follows the config, scores are rounded
    so repeated runs compare equal.
    """
    scores: dict[str, float] = {}
    for topic in vocab.topics:
        score = 0.0
        for phrase, weight in topic.keywords.items():
            if not phrase:
                continue
            hits = body_text.count(phrase) + TITLE_FACTOR * title.count(phrase)
            score += weight * hits
        score = round(score, 6)
        if score > 0 and score >= topic.min_score:
            scores[topic.name] = score
    return scores


# --- keywords -----------------------------------------------------------------------

# Words that carry no subject in this kind of writing (they are in every study article).
KEYWORD_STOPWORDS = frozenset(
    {
        "我们",
        "他们",
        "你们",
        "自己",
        "一是",
        "二是",
        "三是",
        "四是",
        "五是",
        "六是",
        "进一步",
        "同时",
        "不断",
        "持续",
        "推动",
        "推进",
        "坚持",
        "加强",
        "深入",
        "全面",
        "切实",
        "积极",
        "工作",
        "方面",
        "要求",
        "提出",
        "指出",
        "明确",
        "作为",
        "通过",
        "进行",
        "开展",
        "实现",
        "提升",
        "围绕",
        "更加",
        "以及",
        "当前",
        "今后",
        "一个",
        "一批",
        "各类",
        "有关",
        "相关",
        "重要",
        "主要",
    }
)
_NUMBERLIKE = re.compile(r"^[\d０-９.,，%％+\-零〇一二三四五六七八九十百千万亿两第]+$")
_WORDLIKE = re.compile(rf"[{HAN}A-Za-z]")

# Keywords are jieba 0.42.1's TF-IDF keywords (what `jieba.analyse.TFIDF().extract_tags` returns),
# computed without jieba's pure-Python segmenter, which cost 3 ms per article and 2 s to load:
# rjieba (jieba-rs, the same dictionary and HMM in Rust) cuts the text, and the weighting below is
# jieba's, over jieba's own IDF table and stop words read from its package files. Where jieba-rs
# departs from jieba, `_jieba_cut` puts jieba's behaviour back; tests/test_keywords.py compares the
# result with jieba's extractor so that a drift of either package fails there.
#
# Where jieba-rs cuts differently from jieba (found by cutting every Unicode character alone and in
# pairs with both): it counts more characters as Han (the CJK extensions, U+9FD6–U+9FFF, the
# compatibility ideographs) and joins them into words, where jieba yields each one alone; and its HMM
# keeps 2018.3.19, mmbiz.qpic.cn, a_b or 1-2 whole, where jieba's (finalseg's `re_skip`) splits them.
_RJIEBA_ONLY_HAN = re.compile(
    "([\u3400-\u4dbf\u9fd6-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002f800-\U0002fa1f])"
)
_JOINED_BY_CONNECTORS = re.compile(r"[a-zA-Z0-9]+(?:[._\-][a-zA-Z0-9]+)+%?")
_JIEBA_HMM_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.[0-9]+)?%?)")


@dataclass(frozen=True)
class _KeywordModel:
    segmenter: rjieba.Jieba
    idf: dict[str, float]
    median_idf: float
    stop_words: frozenset[str]
    # word → its IDF (the median for unknown words), or None when it cannot be a keyword, for the
    # words met so far: a few thousand entries, against 350,000 in `idf`, whose lookups missed the
    # CPU caches (measured: that one line was 7.6 % of a crawl process's time).
    weights: dict[str, float | None] = field(default_factory=dict)


_WEIGHTS_MAX = 200_000  # words remembered in `_KeywordModel.weights` before it starts over


_keyword_lock = threading.Lock()
_keyword_model: _KeywordModel | None = None


def _package_folder(name: str) -> Path | None:
    """The folder of an installed package, found without importing it (None if not installed)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _jieba_file(*parts: str) -> Path:
    """A data file of the installed jieba package, found without importing jieba."""
    folder = _package_folder("jieba")
    if folder is None:
        raise RuntimeError("jieba is not installed: keywords need its IDF table")
    return folder.joinpath(*parts)


def _parse_idf(content: str) -> tuple[dict[str, float], float]:
    """jieba's IDF table (`word idf` lines) and its median IDF, as `jieba.analyse.tfidf.IDFLoader` reads them."""
    fields = content.split()
    lines = content.count("\n") + (not content.endswith("\n"))
    if len(fields) != 2 * lines:
        raise RuntimeError("jieba's idf.txt is not one 'word idf' pair per line")
    idf = dict(zip(fields[::2], map(float, fields[1::2]), strict=True))
    return idf, sorted(idf.values())[len(idf) // 2]


# The parsed IDF table is kept in the user's cache folder: marshal loads it in 0.1 s, parsing jieba's
# text file takes 0.23 s (reading and decoding 6 MB included), and a crawl loads it at its first
# article, on its critical path. The file's name says which idf.txt (path, size, modification time)
# and which Python wrote it; anything unreadable there is parsed again and the file rewritten.
_IDF_CACHE_FORMAT = 1


def default_cache_dir() -> Path | None:
    """Where zhuanlan keeps derived files it can always rebuild: $XDG_CACHE_HOME/zhuanlan, else
    ~/.cache/zhuanlan; None when there is no home folder to put it in."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if os.path.isabs(base):
        return Path(base) / "zhuanlan"
    try:
        return Path.home() / ".cache" / "zhuanlan"
    except RuntimeError:
        return None


def _idf_cache_file(source: Path, cache_dir: Path) -> Path:
    stat = source.stat()
    identity = (
        f"{_IDF_CACHE_FORMAT}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{marshal.version}|{sys.version}"
    )
    return cache_dir / f"jieba-idf-{hashlib.sha256(identity.encode()).hexdigest()[:20]}.marshal"


def _load_idf(source: Path, cache_dir: Path | None) -> tuple[dict[str, float], float]:
    """jieba's IDF table and median (`_parse_idf`), from the cache when it holds them."""
    cache = None
    if cache_dir is not None:
        try:
            cache = _idf_cache_file(source, cache_dir)
            loaded = marshal.loads(cache.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            loaded = None
        if (
            isinstance(loaded, tuple)
            and len(loaded) == 2
            and isinstance(loaded[0], dict)
            and loaded[0]
            and isinstance(loaded[1], float)
        ):
            return loaded[0], loaded[1]
    idf, median = _parse_idf(source.read_text("utf-8"))
    if cache is not None:
        _write_atomically(cache, marshal.dumps((idf, median)))
    return idf, median


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file beside it (no reader ever sees half a file);
    a folder that cannot be written leaves things as they were."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as exc:
        log.debug("keyword model: the IDF table is not cached at %s: %s", path, exc)


def _parse_stop_words(source: str) -> frozenset[str]:
    """`KeywordExtractor.STOP_WORDS` from the source of jieba/analyse/tfidf.py.

    Read, not imported: importing jieba.analyse builds jieba's default extractor (a second parse of
    the IDF table, and jieba.posseg), 0.6 s for 31 English words.
    """
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and node.name == "KeywordExtractor"):
            continue
        for statement in node.body:
            if isinstance(statement, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "STOP_WORDS" for target in statement.targets
            ):
                value = statement.value
                if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "set":
                    value = value.args[0]  # STOP_WORDS = set((...))
                return frozenset(ast.literal_eval(value))
    raise RuntimeError("KeywordExtractor.STOP_WORDS not found in jieba/analyse/tfidf.py")


def _load_keyword_model() -> _KeywordModel:
    """A private jieba-rs segmenter and jieba's IDF table and stop words, made once per process.

    Private segmenter: words other modules add to rjieba's global dictionary must not change our
    keywords, or a retag would see changes that are not there. Nothing is downloaded or written.
    """
    global _keyword_model
    if _keyword_model is not None:
        return _keyword_model
    with _keyword_lock:
        if _keyword_model is None:
            idf, median = _load_idf(_jieba_file("analyse", "idf.txt"), default_cache_dir())
            stop_words = _parse_stop_words(_jieba_file("analyse", "tfidf.py").read_text("utf-8"))
            _keyword_model = _KeywordModel(_segmenter_class()(), idf, median, stop_words)
        return _keyword_model


def _segmenter_class() -> type[rjieba.Jieba]:
    """rjieba's `Jieba`, loaded from its extension module without running `rjieba/__init__.py`.

    That file builds a module-wide default segmenter (its dictionary parsed: 0.1 s of CPU, measured)
    that zhuanlan never uses, on the crawl's critical path at its first page. Where the package is
    laid out otherwise (a future release), the plain import."""
    loaded = sys.modules.get("rjieba.rjieba")
    if loaded is None:
        folder = _package_folder("rjieba")
        binaries = [p for p in folder.glob("rjieba.*") if p.suffix in (".so", ".pyd")] if folder else []
        extension = importlib.util.spec_from_file_location("rjieba.rjieba", binaries[0]) if binaries else None
        if extension is None or extension.loader is None:
            import rjieba

            return rjieba.Jieba
        loaded = importlib.util.module_from_spec(extension)
        extension.loader.exec_module(loaded)
        sys.modules["rjieba.rjieba"] = loaded  # a later `import rjieba` finds it and does not load it twice
    jieba: type[rjieba.Jieba] = loaded.Jieba
    return jieba


def warm_up_keywords() -> None:
    """Load the segmenter and the IDF table now (about 0.5 s of CPU) rather than on the first article."""
    _load_keyword_model()


def _jieba_cut(segmenter: rjieba.Jieba, text: str) -> list[str]:
    """The words jieba 0.42.1's `Tokenizer().cut(text)` (HMM on) gives, cut by jieba-rs."""
    words: list[str] = []
    for index, piece in enumerate(_RJIEBA_ONLY_HAN.split(text)):
        if index % 2:
            words.append(piece)  # a character jieba-rs would join to its neighbours
        elif piece:
            cut = segmenter.cut(piece)
            if _JOINED_BY_CONNECTORS.search(piece):
                cut = [part for word in cut for part in _jieba_hmm_split(word)]
            words.extend(cut)
    return words


def _jieba_hmm_split(word: str) -> list[str]:
    """`word` as jieba's HMM yields it: 2018.3.19 → 2018.3 . 19, a_b → a _ b; other words as they are."""
    if len(word) > 2 and _JOINED_BY_CONNECTORS.fullmatch(word):
        return [part for part in _JIEBA_HMM_SKIP.split(word) if part]
    return [word]


def _tfidf_ranking(words: Iterable[str], model: _KeywordModel) -> list[str]:
    """Words by TF-IDF weight, highest first: `jieba.analyse.TFIDF.extract_tags` step for step.

    Same filter (two characters or more once stripped, not a stop word), frequency × IDF / total with
    the median IDF for unknown words, computed in the same order so the floats are equal, and the
    same stable sort: equal weights keep the order of first occurrence.
    """
    # Counted first, then filtered once per distinct word (jieba filters every occurrence): the same
    # words in the same first-occurrence order with the same counts, at a fraction of the calls.
    weights = model.weights
    counted: list[tuple[str, float, float]] = []
    for word, count in Counter(words).items():
        weight = weights.get(word, -1.0)
        if weight == -1.0:
            if len(word.strip()) >= 2 and word.lower() not in model.stop_words:
                weight = model.idf.get(word, model.median_idf)
            else:
                weight = None
            if len(weights) >= _WEIGHTS_MAX:
                weights.clear()
            weights[word] = weight
        if weight is not None:
            counted.append((word, float(count), weight))
    total = sum(count for _, count, _ in counted)
    freq = {word: count * (weight / total) for word, count, weight in counted}
    return sorted(freq, key=freq.__getitem__, reverse=True)


def _good_keyword(word: str) -> bool:
    word = word.strip()
    return (
        len(word) > 1 and bool(_WORDLIKE.search(word)) and not _NUMBERLIKE.match(word) and word not in KEYWORD_STOPWORDS
    )


def top_keywords(text: str, k: int = 8) -> list[str]:
    """The `k` best jieba TF-IDF keywords of `text`: no numbers, no single characters, no stopwords."""
    if k <= 0 or not text.strip():
        return []
    model = _load_keyword_model()
    # The k * 4 + 10 best are the candidates, as when jieba's extract_tags(topK=k * 4 + 10) gave them:
    # numbers, single characters and stopwords are dropped afterwards.
    return pick_keywords(_tfidf_ranking(_jieba_cut(model.segmenter, text), model)[: k * 4 + 10], k)


def pick_keywords(candidates: Iterable[str], k: int) -> list[str]:
    """The first `k` good keywords of ranked candidates: no numbers, single characters, stopwords or repeats."""
    keywords: list[str] = []
    for word in candidates:
        word = word.strip()
        if _good_keyword(word) and word not in keywords:
            keywords.append(word)
            if len(keywords) == k:
                break
    return keywords


# Keywords are read from the title and the opening of the body: jieba's Python segmenter cost about
# 3 µs per character, the lead of a study article names its subject, and a 10,000-character report
# would otherwise cost 30 ms per article on the crawl's thread (measured on the labelled real pages of
# the shared corpus: 13.4 → 2.4 ms per article, 3/4 of the keywords the same as from the whole text).
# jieba-rs is ten times cheaper, but the limit stays: it decides which keywords an article gets.
KEYWORD_TEXT_CHARS = 1000


def keyword_text(title: str, body_text: str) -> str:
    """What keywords are extracted from: the title and the first `KEYWORD_TEXT_CHARS` of the body."""
    return f"{title}\n{body_text[:KEYWORD_TEXT_CHARS]}"


# --- the whole record ---------------------------------------------------------------


def compute_tags(
    *,
    title: str,
    body_text: str,
    vocab: Vocabulary,
    byline: str | None = None,
    author: str | None = None,
    source_label: str | None = None,
    item_column: str | None = None,
    owning_unit: str | None = None,
    source_kind: str | None = None,
    by_title_rule: bool = False,
    keyword_count: int = 8,
) -> Tags:
    """Tags from plain values; shared by the tag stage (from an item) and retag (from stored rows)."""
    attribution = attribute(
        body_text=body_text,
        title=title,
        vocab=vocab,
        page_label=source_label,
        author_field=author,
        byline_field=byline,
        source_kind=source_kind,
        owning_unit=owning_unit,
    )
    membership = column_membership(
        item_column=item_column,
        source_kind=source_kind,
        title=title,
        body_text=body_text,
        vocab=vocab,
        by_title_rule=by_title_rule,
    )
    return Tags(
        unit=attribution.unit,
        unit_from=attribution.unit_from,
        author="、".join(attribution.names) or None,
        authors=list(attribution.authors),
        positions=attribution.positions,
        column=membership.column,
        column_candidate=membership.candidate,
        column_reason=membership.reason,
        topics=score_topics(title, body_text, vocab),
        keywords=top_keywords(keyword_text(title, body_text), keyword_count),
    )


def merge_tags(primary: Tags, other: Tags) -> Tags:
    """The tags of a story seen at several places: the original's (`primary`), with what it lacks
    taken from another appearance — a unit (and its authors) when the original names none, and
    column membership when the other appearance is in the column's album or list."""
    merged = primary
    if merged.unit is None and other.unit is not None:
        merged = replace(merged, unit=other.unit, unit_from=other.unit_from)
        if not merged.authors and other.authors:
            merged = replace(merged, authors=other.authors, author=other.author, positions=other.positions)
    if merged.column is None and other.column is not None:
        merged = replace(merged, column=other.column, column_reason=other.column_reason, column_candidate=None)
    elif merged.column is None and merged.column_candidate is None and other.column_candidate is not None:
        merged = replace(merged, column_candidate=other.column_candidate, column_reason=other.column_reason)
    return merged


def tag_record(record: Record, vocab: Vocabulary, owning_unit: str | None) -> Tags:
    """Tags of one normalized record; `owning_unit` is the crawled source's unit, if any."""
    item = record.item
    return compute_tags(
        title=record.title or item.title,
        body_text=record.body_text,
        vocab=vocab,
        byline=item.byline,
        author=item.author,
        source_label=item.source_label,
        item_column=item.column if item.in_column else None,
        owning_unit=owning_unit,
        source_kind=item.source_kind,
        by_title_rule=item.extra.get("column_rule") == "title",
    )
