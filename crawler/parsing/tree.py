"""The lxml trees of the site parsers: `lxml.html` elements, without its per-element class lookup.

`lxml.html.fromstring` asks a Python function, for every element the code touches, which class
stands for it (forms, inputs, labels and the like get classes of their own). The parsers use none
of those, and the question cost a quarter of parsing and walking an article page (measured: 131 →
101 µs a page on the generated site). Every element here is an `HtmlElement`, with `text_content`,
`drop_tree` and the rest. A parser is not shared between threads: each thread gets its own.
"""

from __future__ import annotations

import threading
from typing import Any

import lxml.html  # type: ignore[import-untyped]
from lxml import etree

_local = threading.local()


def _parser() -> Any:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = lxml.html.HTMLParser()
        parser.set_element_class_lookup(
            etree.ElementDefaultClassLookup(
                element=lxml.html.HtmlElement,
                comment=lxml.html.HtmlComment,
                pi=lxml.html.HtmlProcessingInstruction,
                entity=lxml.html.HtmlEntity,
            )
        )
        _local.parser = parser
    return parser


def html_tree(text: str) -> Any:
    """`lxml.html.fromstring(text)`, its elements all `HtmlElement`s."""
    return lxml.html.fromstring(text, parser=_parser())
