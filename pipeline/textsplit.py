"""The search pre-splitter shared by both databases (see DESIGN.md, Chinese full-text search).

Han text becomes overlapping character bigrams (a lone Han character stays a unigram);
Latin words and numbers stay whole, lower-cased. The same function splits documents and
queries, so a query of two or more Han characters is a phrase of bigrams and finds every
substring occurrence (recall 1.0).
"""

from __future__ import annotations

import re

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_HAN}]+|[A-Za-z0-9\u00c0-\u024f]+")
_IS_HAN = re.compile(rf"[{_HAN}]")


def han_run_tokens(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def split_runs(text: str) -> list[list[str]]:
    """Tokens grouped per contiguous run (a Han run's bigrams, or one Latin word)."""
    runs: list[list[str]] = []
    for match in _TOKEN.finditer(text):
        run = match.group(0)
        if _IS_HAN.match(run):
            runs.append(han_run_tokens(run))
        else:
            runs.append([run.lower()])
    return runs


def split_text(text: str) -> str:
    """Index form of a text: tokens separated by spaces."""
    return " ".join(token for run in split_runs(text) for token in run)
