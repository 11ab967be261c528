"""Parsing what a person typed into the search box: pure functions, no database.

Owns the query grammar (terms, "quoted phrases" or “中文引号”, implicit and explicit AND, OR,
NOT or a leading `-`, parentheses) and turning each term into the index's tokens with
`pipeline.corpus.textsplit.split_runs`, plus the pure translations of terms into FTS5 and PostgreSQL
tsquery text. Any input either parses or raises `QueryError` with a plain message: nothing a
user types reaches a database as syntax, because every token is re-quoted from the splitter's
output (Han characters, Latin letters and digits only).

A query is folded as the index is (`pipeline.corpus.textsplit.fold_for_matching`): ＡＢＣ１２３ is abc123 and
full-width （）＂ are read as the grammar's ( ) ".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pipeline.corpus.textsplit import fold_for_matching, split_runs

MAX_QUERY_CHARS = 500
MAX_TERMS = 32
MAX_DEPTH = 16

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD_CHARS = r"A-Za-z0-9\u00c0-\u024f"
_IS_HAN = re.compile(rf"^[{_HAN}]$")
# Characters the splitter drops: the index sees no boundary there, so a term may match across them.
_GAP = rf"[^{_HAN}{_WORD_CHARS}]*"
_QUOTES = {'"': '"', "“": "”", "”": "”", "「": "」", "『": "』"}
_SPECIAL = set(_QUOTES) | {"(", ")"}
# ASCII letters and digits to their full-width forms (U+FF10…, U+FF21…, U+FF41…), which fold back to them.
_FULL_WIDTH = {code: code + 0xFEE0 for code in (*range(0x30, 0x3A), *range(0x41, 0x5B), *range(0x61, 0x7B))}


class QueryError(ValueError):
    """The query cannot be searched; `message` is plain text fit to show the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Term:
    """One searchable term: a word or a quoted phrase, as a sequence of index tokens."""

    raw: str
    runs: tuple[tuple[str, ...], ...]
    quoted: bool = False

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(token for run in self.runs for token in run)

    @property
    def needs_scan(self) -> bool:
        """A lone Han character is indexed only inside bigrams, so the index cannot find it alone."""
        return any(len(run) == 1 and _IS_HAN.match(run[0]) is not None for run in self.runs)

    def run_texts(self) -> list[str]:
        """The original text of each run (Latin runs lower-cased), rebuilt from its tokens."""
        texts = []
        for run in self.runs:
            if _IS_HAN.match(run[0][0]):
                texts.append(run[0] + "".join(token[1:] for token in run[1:]))
            else:
                texts.append(run[0])
        return texts

    def like_text(self) -> str:
        """The substring a LIKE scan looks for: the runs as they appear in text."""
        return "%".join(self.run_texts())

    def like_texts(self) -> list[str]:
        """Every form a LIKE scan looks for. The runs are folded (ASCII letters and digits) but the
        stored text is the page's own, so a term with Latin letters or digits is also looked for in
        full-width ones, lower and upper case (SQLite's LIKE ignores the case of ASCII letters only)."""
        text = self.like_text()
        forms = [text]
        for form in (text.translate(_FULL_WIDTH), text.upper().translate(_FULL_WIDTH)):
            if form not in forms:
                forms.append(form)
        return forms


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node = Term | And | Or | Not


@dataclass(frozen=True)
class Query:
    """A parsed query; `root` is None for an empty query (browse)."""

    text: str
    root: Node | None

    @property
    def is_empty(self) -> bool:
        return self.root is None

    def terms(self, *, positive: bool | None = None) -> list[Term]:
        """All terms; with `positive=True` only those not under a NOT (what to rank and highlight)."""
        found: list[Term] = []

        def walk(node: Node, negated: bool) -> None:
            if isinstance(node, Term):
                if positive is None or positive != negated:
                    found.append(node)
            elif isinstance(node, Not):
                walk(node.child, not negated)
            else:
                for child in node.children:
                    walk(child, negated)

        if self.root is not None:
            walk(self.root, False)
        return found


# --- lexing -----------------------------------------------------------------------------

_LPAREN, _RPAREN, _AND, _OR, _NOT, _WORD, _PHRASE = "(", ")", "AND", "OR", "NOT", "WORD", "PHRASE"
_OPERATORS = {"AND": _AND, "OR": _OR, "NOT": _NOT, "&&": _AND, "||": _OR, "|": _OR}


def _clean(text: str) -> str:
    """Control, format and surrogate characters become spaces (NUL and friends never reach SQL)."""
    return "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} else ch for ch in text)


def _lex(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    i, n, depth = 0, len(text), 0
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            tokens.append((_LPAREN, ch))
            depth += 1
            i += 1
        elif ch == ")":
            if depth > 0:  # a stray closing parenthesis is ignored rather than refused
                tokens.append((_RPAREN, ch))
                depth -= 1
            i += 1
        elif ch in _QUOTES:
            close = _QUOTES[ch]
            end = text.find(close, i + 1)
            if end < 0:  # unbalanced quote: the phrase runs to the end
                end = n
            tokens.append((_PHRASE, text[i + 1 : end]))
            i = end + 1
        elif ch == "-" and i + 1 < n and not text[i + 1].isspace() and text[i + 1] != "-":
            tokens.append((_NOT, ch))
            i += 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            word = text[i:j]
            tokens.append((_OPERATORS.get(word, _WORD), word))
            i = j
    return tokens


# --- parsing ----------------------------------------------------------------------------


def _make(kind: type[And] | type[Or], parts: list[Node | None]) -> Node | None:
    flat: list[Node] = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, kind):
            flat.extend(part.children)
        else:
            flat.append(part)
    if not flat:
        return None
    if len(flat) == 1:
        return flat[0]
    return kind(tuple(flat))


def _term(raw: str, quoted: bool) -> Term | None:
    runs = tuple(tuple(run) for run in split_runs(raw))
    if not runs:
        return None
    return Term(raw=raw.strip(), runs=runs, quoted=quoted)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def parse_or(self) -> Node | None:
        parts = [self.parse_and()]
        while self.peek() == _OR:
            self.pos += 1
            parts.append(self.parse_and())
        return _make(Or, parts)

    def parse_and(self) -> Node | None:
        parts: list[Node | None] = []
        while True:
            kind = self.peek()
            if kind is None or kind in (_RPAREN, _OR):
                break
            if kind == _AND:
                self.pos += 1
                continue
            parts.append(self.parse_unary())
        return _make(And, parts)

    def parse_unary(self) -> Node | None:
        negated = False
        while self.peek() == _NOT:  # iterative: "NOT NOT NOT …" must not recurse
            self.pos += 1
            negated = not negated
        if self.peek() in (None, _RPAREN, _OR, _AND):
            return None  # a dangling NOT is ignored
        node = self.parse_primary()
        if node is None or not negated:
            return node
        return node.child if isinstance(node, Not) else Not(node)

    def parse_primary(self) -> Node | None:
        kind, value = self.tokens[self.pos]
        self.pos += 1
        if kind == _LPAREN:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryError(f"括号嵌套太深（最多 {MAX_DEPTH} 层）/ too many nested parentheses")
            node = self.parse_or()
            if self.peek() == _RPAREN:
                self.pos += 1
            self.depth -= 1
            return node
        return _term(value, quoted=kind == _PHRASE)


def parse_query(q: str) -> Query:
    """Parse a search box query. Raises `QueryError` (and nothing else) when it cannot be searched."""
    if not isinstance(q, str):
        raise QueryError("查询必须是文字 / the query must be text")
    if len(q) > MAX_QUERY_CHARS:
        raise QueryError(
            f"查询太长（最多 {MAX_QUERY_CHARS} 个字符）/ query too long (at most {MAX_QUERY_CHARS} characters)"
        )
    text = _clean(q).strip()
    if not text:
        return Query(text="", root=None)
    # Folded before reading the grammar too: （）＂－ work as ( ) " - do, so a query finds the same
    # rows whether it was typed with full-width or ASCII punctuation, letters and digits.
    parser = _Parser(_lex(fold_for_matching(text)))
    root = parser.parse_or()
    if root is None:
        raise QueryError("查询中没有可搜索的汉字、字母或数字 / the query has no searchable words")
    query = Query(text=text, root=root)
    if len(query.terms()) > MAX_TERMS:
        raise QueryError(f"查询的词太多（最多 {MAX_TERMS} 个）/ too many terms (at most {MAX_TERMS})")
    if not query.terms(positive=True):
        raise QueryError(
            "查询只有排除的词，请至少给出一个要查找的词 / give at least one word to search for, not only exclusions"
        )
    return query


# --- translations (pure) ----------------------------------------------------------------


def fts5_phrase(term: Term) -> str:
    """An FTS5 phrase: every token inside one double-quoted string (quotes doubled, although the
    splitter never yields one), so no user text is ever read as FTS5 syntax."""
    return '"' + " ".join(token.replace('"', '""') for token in term.tokens) + '"'


def to_fts5(node: Node) -> str | None:
    """The whole query as one FTS5 MATCH expression, or None when FTS5 cannot express it
    (a lone Han character, or a NOT without a positive partner: FTS5's NOT is binary)."""
    if isinstance(node, Term):
        return None if node.needs_scan else fts5_phrase(node)
    if isinstance(node, Not):
        return None
    if isinstance(node, Or):
        parts = [to_fts5(child) for child in node.children]
        if any(part is None for part in parts):
            return None
        return "(" + " OR ".join(p for p in parts if p is not None) + ")"
    positives = [to_fts5(child) for child in node.children if not isinstance(child, Not)]
    negatives = [to_fts5(child.child) for child in node.children if isinstance(child, Not)]
    if not positives or any(p is None for p in positives) or any(n is None for n in negatives):
        return None
    expr = "(" + " AND ".join(p for p in positives if p is not None) + ")"
    if negatives:
        expr = f"({expr} NOT (" + " OR ".join(n for n in negatives if n is not None) + "))"
    return expr


def _tsquery_tokens(term: Term) -> list[str]:
    return ["'" + token.replace("\\", "\\\\").replace("'", "''") + "'" for token in term.tokens]


def tsquery_phrase(term: Term) -> str:
    """A PostgreSQL tsquery phrase `'t1' <-> 't2'`, every token quoted and escaped."""
    return "(" + " <-> ".join(_tsquery_tokens(term)) + ")"


def tsquery_all(term: Term) -> str:
    """`'t1' & 't2'`: every token of the term anywhere in the text. A GIN index answers it without
    reading the rows (a phrase needs each candidate's positions), and it holds wherever the phrase does."""
    return "(" + " & ".join(_tsquery_tokens(term)) + ")"


def highlight_pattern(term: Term) -> re.Pattern[str]:
    """Where a term occurs in the original text: its runs, with the characters the index ignores
    allowed between them; Latin words only as whole words (the index keeps them whole)."""
    parts = []
    for text in term.run_texts():
        if _IS_HAN.match(text[0]):
            parts.append(re.escape(text))
        else:
            parts.append(rf"(?<![{_WORD_CHARS}]){re.escape(text)}(?![{_WORD_CHARS}])")
    return re.compile(_GAP.join(parts), re.IGNORECASE)
