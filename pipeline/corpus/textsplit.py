"""The search pre-splitter shared by both databases (see DESIGN.md, Chinese full-text search), and
the fold every matcher applies.

Han text becomes overlapping character bigrams (a lone Han character stays a unigram);
Latin words and numbers stay whole, lower-cased. The same function splits documents and
queries, so a query of two or more Han characters is a phrase of bigrams and finds every
substring occurrence (recall 1.0).

`fold_for_matching` (NFKC) is where full-width letters, digits and punctuation meet their ASCII
forms: the splitter folds what it splits, the content hash and the near-duplicate shingles fold
their input too. Stored and shown text is never folded (DESIGN.md, Text fidelity), so code that
finds something in folded text and shows it from the original maps positions back with
`fold_with_offsets` (a fold can change the length: ㈠ → (一)). Pure functions; this module stays
cheap to import (the crawl process and the web app both load it).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_HAN}]+|[A-Za-z0-9\u00c0-\u024f]+")
_IS_HAN = re.compile(rf"[{_HAN}]")


@cache
def _changing() -> re.Pattern[str]:
    """A piece of text that may fold to something else: a character NFKC changes by itself (any
    character outside the Basic Multilingual Plane, not to check them all), or any character
    followed by combining marks (NFKC may compose them), with the marks that follow it.

    Built once per process from the Unicode tables of this Python (about 15 ms)."""
    changing, marks = [], []
    for code in range(0x10000):
        if 0xD800 <= code < 0xE000:
            continue
        ch = chr(code)
        if unicodedata.normalize("NFKC", ch) != ch:
            changing.append(code)
        if unicodedata.combining(ch):
            marks.append(code)
    changes, combining = char_class(changing), char_class(marks)
    return re.compile(rf"(?:[{changes}\U00010000-\U0010ffff]|.(?=[{combining}]))[{combining}]*", re.DOTALL)


def char_class(codes: list[int]) -> str:
    """The body of a regular expression character class holding exactly `codes` (ascending)."""
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(
        re.escape(chr(low)) if low == high else f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges
    )


@lru_cache(maxsize=8192)  # a page repeats its few dozen full-width marks; bounded for odd input
def _fold_piece(piece: str) -> str:
    return unicodedata.normalize("NFKC", piece)


def _fold_match(match: re.Match[str]) -> str:
    return _fold_piece(match.group(0))


def fold_for_matching(text: str) -> str:
    """`text` as matching sees it: NFKC (full-width ，：（）ＡＢＣ１２３ and the ideographic space become
    ,:()ABC123 and a space; ㈠ becomes (一); compatibility ideographs become the unified ones).

    Exactly `unicodedata.normalize("NFKC", text)`, computed faster for the usual Chinese page (a
    few hundred full-width punctuation marks among Han characters): only the pieces that can change
    are normalized; if the result is then normalized as a whole, it is the NFKC of the text (the
    pieces were replaced by compatibility-equivalent text), otherwise the text is normalized whole.
    """
    folded = _changing().sub(_fold_match, text)
    if unicodedata.is_normalized("NFKC", folded):
        return folded
    return unicodedata.normalize("NFKC", text)


def fold_pieces(text: str) -> list[tuple[int, int, str]]:
    """(start, end, fold) of every piece of `text` that folds to something else, in order: a
    character with the combining marks after it. Between the pieces the text folds to itself."""
    pieces = []
    for match in _changing().finditer(text):
        folded = _fold_piece(match.group(0))
        if folded != match.group(0):
            pieces.append((match.start(), match.end(), folded))
    return pieces


def fold_with_offsets(text: str) -> tuple[str, list[int], list[int]]:
    """(folded, starts, ends): `text` folded piece by piece, and for every folded character k the
    piece of `text` it came from, `text[starts[k]:ends[k]]`. A match found in the folded text at
    [a, b) is `text[starts[a]:ends[b - 1]]` in the original.

    Equal to `fold_for_matching(text)` except where NFKC composes across pieces (Hangul jamo,
    half-width katakana with a separate voiced mark): good for showing matches, not for keys."""
    parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for start, end, folded in fold_pieces(text):
        if start > pos:
            parts.append(text[pos:start])
            starts.extend(range(pos, start))
            ends.extend(range(pos + 1, start + 1))
        parts.append(folded)
        starts.extend([start] * len(folded))
        ends.extend([end] * len(folded))
        pos = end
    if pos < len(text):
        parts.append(text[pos:])
        starts.extend(range(pos, len(text)))
        ends.extend(range(pos + 1, len(text) + 1))
    return "".join(parts), starts, ends


def han_run_tokens(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def split_runs(text: str) -> list[list[str]]:
    """Tokens grouped per contiguous run (a Han run's bigrams, or one Latin word) of the folded text."""
    runs: list[list[str]] = []
    for match in _TOKEN.finditer(fold_for_matching(text)):
        run = match.group(0)
        if _IS_HAN.match(run):
            runs.append(han_run_tokens(run))
        else:
            runs.append([run.lower()])
    return runs


def split_text(text: str) -> str:
    """Index form of a text: tokens separated by spaces (`split_runs`, flattened; built without the
    per-run lists: this runs for every stored article, 15 % faster so)."""
    return split_folded(fold_for_matching(text))


def split_folded(folded: str) -> str:
    """`split_text` of a text already folded (`fold_for_matching`), for a caller that folds it once
    for several uses."""
    tokens: list[str] = []
    for run in _TOKEN.findall(folded):
        if not _IS_HAN.match(run):
            tokens.append(run.lower())
        elif len(run) == 1:
            tokens.append(run)
        else:
            tokens.extend([run[i : i + 2] for i in range(len(run) - 1)])
    return " ".join(tokens)
