"""The office's vocabulary from the config, and matching text to its configured units.

Owns `Vocabulary` (units with aliases, topics, columns) and `UnitMatcher`: which configured unit
an organisation as written names. The most specific configured name wins (科学技术局 beats
技术局; a configured county unit beats the city's alias of the same department), and a name with
a county or district prefix (甘州区科技局, 肃南县直机关工委) or another city's prefix never falls back
to the city's alias of the same department: it names no unit unless configured itself.

Must not touch the database, Scrapy or the clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crawler.parsing.bylines import squash
from crawler.parsing.positions import HAN
from zhuanlan_config import ColumnConf, TopicConf, UnitConf

if TYPE_CHECKING:
    from zhuanlan_config import Config

_PARTY_PREFIX = re.compile(r"^(?:中国共产党|中共|共青团)")
# What may stand before a configured name and still be the same unit: nothing, or our own city.
# A county-level prefix (…县, …区, …旗, …州, 县直, 区委, 县政府…) makes it another unit.
_COUNTY_BEFORE = re.compile(r"(?:县|区|旗|州|镇|乡)(?:直|委|人民政府|政府)?$")
_CITY_BEFORE = re.compile(rf"[{HAN}]{{2,6}}市$")
_PLACE = re.compile(rf"^(?:中国共产党|中共|共青团)?(?P<place>[{HAN}]{{2,4}}?[市县区旗州])")


class UnitMatcher:
    """Finds the configured unit that a piece of text names, by name, short name or alias."""

    def __init__(self, units: Iterable[UnitConf]) -> None:
        patterns: list[tuple[str, str]] = []
        self._names: list[str] = []
        places: set[str] = set()
        for unit in units:
            self._names.append(unit.name)
            for pattern in (unit.name, unit.short_name, *unit.aliases):
                if pattern and squash(pattern):
                    patterns.append((squash(pattern), unit.name))
                    place = _PLACE.match(squash(pattern))
                    if place is not None and place.group("place").endswith("市"):
                        places.add(place.group("place"))
        # Longest first; the stable sort keeps config order among equal lengths.
        self._patterns = sorted(patterns, key=lambda p: -len(p[0]))
        self._cities = frozenset(places)

    def __bool__(self) -> bool:
        return bool(self._names)

    @staticmethod
    def _place(before: str, pattern: str) -> str:
        """What stands before `pattern` without a Party prefix, as a place name (「临溪」 before
        「市财政局」 is 临溪市); empty when nothing does."""
        before = _PARTY_PREFIX.sub("", before)
        return before + "市" if before and pattern.startswith("市") and not before.endswith("市") else before

    def _same_place(self, before: str, pattern: str) -> bool:
        """Whether `before` + `pattern` still names the configured unit of `pattern`."""
        place = self._place(before, pattern)
        if not place:
            return True
        if _COUNTY_BEFORE.search(_PARTY_PREFIX.sub("", before)):
            return False
        if self._cities and any(place.endswith(city) for city in self._cities):
            return True
        # Another city's name before the department (兰州市科技局): not ours when we know our city.
        return not (self._cities and _CITY_BEFORE.search(place))

    def match(self, text: str | None) -> str | None:
        """The configured unit named in `text` (anywhere in it), or None."""
        if not text:
            return None
        squashed = squash(text)
        if not squashed:
            return None
        for pattern, name in self._patterns:
            start = squashed.find(pattern)
            while start >= 0:
                if self._same_place(squashed[:start], pattern):
                    return name
                start = squashed.find(pattern, start + 1)
        # 「市科学技术局」 for a unit configured only as 张掖市科学技术局: 市 followed by the rest of
        # exactly one configured name.
        if len(squashed) >= 3 and squashed[0] == "市":
            hits = [name for name in self._names if squash(name).endswith(squashed)]
            if len(hits) == 1:
                return hits[0]
        return None

    def leading(self, text: str | None) -> str | None:
        """The configured unit that `text` starts with: a headline's subject (「市财政局召开…」,
        「中共临溪市财政局党组：…」). Only a Party prefix and our own city may stand before the name; a
        unit named further in (「…到市财政局调研」) or behind another place (甘州区科技局) is not read."""
        if not text:
            return None
        squashed = squash(text)
        for pattern, name in self._patterns:
            start = squashed.find(pattern)
            place = self._place(squashed[:start], pattern) if start >= 0 else None
            if place is not None and (not place or place in self._cities):  # only our own city before it
                return name
        # 「市科学技术局…」 for a unit configured only as 临溪市科学技术局: the one name whose part from
        # 市 on the text starts with.
        hits = set()
        for name in self._names:
            full = squash(name)
            city_at = full.find("市")
            if city_at > 0 and len(full) - city_at >= 3 and squashed.startswith(full[city_at:]):
                hits.add(name)
        return hits.pop() if len(hits) == 1 else None

    def ends_with_unit(self, text: str) -> bool:
        """True when `text` ends with a configured unit's name (and nothing before it makes it another
        unit): where an organisation ends and a position starts in 「市政府办公室党组书记」."""
        squashed = squash(text)
        if not squashed:
            return False
        for pattern, _ in self._patterns:
            if squashed.endswith(pattern) and self._same_place(squashed[: -len(pattern)], pattern):
                return True
        return squashed[0] == "市" and sum(squash(n).endswith(squashed) for n in self._names) == 1

    def names_unit(self, text: str) -> bool:
        """True when `text` as a whole is a configured unit's name or alias (no more, no less)."""
        squashed = squash(text)
        return any(pattern == squashed for pattern, _ in self._patterns)


@dataclass(frozen=True)
class Vocabulary:
    """The office's own vocabulary from the config: units (with aliases), topics, columns."""

    units: tuple[UnitConf, ...] = ()
    topics: tuple[TopicConf, ...] = ()
    columns: tuple[ColumnConf, ...] = ()
    matcher: UnitMatcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived once: the matcher sorts every alias, and a vocabulary tags thousands of articles.
        object.__setattr__(self, "matcher", UnitMatcher(self.units))

    @classmethod
    def from_config(cls, config: Config) -> Vocabulary:
        return cls(units=tuple(config.units), topics=tuple(config.topics), columns=tuple(config.columns))

    @classmethod
    def empty(cls) -> Vocabulary:
        return cls()
