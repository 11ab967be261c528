"""Readable feed URL names: `/feeds/unit/<slug>.atom` rather than `unit-3.atom` or a hash.

Pure. A slug is the configured `slug` of a unit, topic or column, or else the pinyin of its
name, one syllable per hyphen (市科学技术局 → shi-ke-xue-ji-shu-ju). Slugs are unique per
kind and assigned in the order the caller gives (units by sort order then id, topics and
columns config first): an entry keeps its slug when others are added after it. A later
entry whose pinyin collides gets a suffix from the hash of its own name, which does not
depend on what else is listed. pypinyin's readings are data that could change between its
releases; tests pin the URLs of a sample config, and a configured `slug` pins any one feed.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import TYPE_CHECKING

from pypinyin import Style, lazy_pinyin

if TYPE_CHECKING:
    from collections.abc import Iterable

MAX_SLUG_CHARS = 80
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _short_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:6]


def pinyin_slug(name: str) -> str:
    """The pinyin of `name` as lowercase ASCII words joined by hyphens, cut at a word boundary
    to at most MAX_SLUG_CHARS; a name with nothing readable gives `n-<hash of the name>`."""
    text = unicodedata.normalize("NFKC", name)
    words: list[str] = []
    for chunk in lazy_pinyin(text, style=Style.NORMAL, errors="default"):
        words += [w for w in _NOT_SLUG.split(chunk.lower()) if w]
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > MAX_SLUG_CHARS:
            break
        slug = candidate
    return slug or f"n-{_short_hash(name)}"


def assign_slugs(entries: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    """name -> slug for (name, configured slug or None) pairs, unique among them.

    Configured slugs are taken first (the config validates that they are unique per kind);
    the others follow in the given order, a collision adding `-<hash of the name>`."""
    pairs = list(dict.fromkeys(entries))
    slugs: dict[str, str] = {name: slug for name, slug in pairs if slug}
    taken = set(slugs.values())
    for name, configured in pairs:
        if configured or name in slugs:
            continue
        slug = pinyin_slug(name)
        if slug in taken:
            slug = f"{slug}-{_short_hash(name)}"
        while slug in taken:  # only when hashes collide too: still deterministic
            slug = f"{slug}-{_short_hash(slug)}"
        slugs[name] = slug
        taken.add(slug)
    return slugs
