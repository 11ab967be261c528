"""Dates as Chinese pages write them ("2025-11-07 08:31", "2025年11月7日 8时31分"), read as Asia/Shanghai."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

DATETIME = re.compile(
    r"((?:19|20)\d{2})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[\sT]*(\d{1,2})\s*[:：时]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2}))?)?"
)


def parse_datetime(text: str) -> datetime | None:
    """The first date (and time, if given) in `text`, as Asia/Shanghai; None for no or an impossible date."""
    match = DATETIME.search(text)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)
    except ValueError:
        return None
