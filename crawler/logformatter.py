"""Scrapy log lines that name an item by its source and key, never by its whole content.

Scrapy's default formatter prints the whole item on scrape, drop and error; ours carry the raw
page bytes, which would flood the log and put page content where no one expects it.
"""

from __future__ import annotations

from typing import Any

from scrapy import logformatter


def describe(item: Any) -> str:
    key = getattr(item, "canonical_key", None) or getattr(item, "url", None)
    inner = getattr(item, "item", None)  # pipeline records wrap the spider's item
    if key is None and inner is not None:
        key = getattr(inner, "canonical_key", None) or getattr(inner, "url", None)
    return f"<{type(item).__name__} {key}>"


def _quiet(result: Any, item: Any) -> Any:
    args = result.get("args")
    if isinstance(args, dict):
        result["args"] = {**args, "item": describe(item)}
    return result


class QuietLogFormatter(logformatter.LogFormatter):
    def scraped(self, item: Any, response: Any, spider: Any) -> Any:
        return _quiet(super().scraped(item, response, spider), item)

    def dropped(self, item: Any, exception: BaseException, response: Any, spider: Any) -> Any:
        return _quiet(super().dropped(item, exception, response, spider), item)

    def item_error(self, item: Any, exception: BaseException, response: Any, spider: Any) -> Any:
        return _quiet(super().item_error(item, exception, response, spider), item)
