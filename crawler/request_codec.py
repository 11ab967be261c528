"""How a queued request is written into Redis: JSON, never pickle (`SCHEDULER_SERIALIZER`).

scrapy-redis pickles requests by default, and unpickling runs whatever the bytes say: whoever
could write to the Redis could make every crawl process run code. Here a request (Scrapy's
`request_to_dict`) becomes JSON, with a tag for the few values JSON has no form for: bytes (bodies
and headers), tuples, dates, dicts whose keys are not strings (headers), and the dataclasses our
spiders put in a request's meta, each named in `_DATACLASSES`. Reading builds only those; anything
else is refused with `ValueError` (the crawl records the failure), so the worst a forged entry can
do is ask for a page.

`dumps` and `loads` are the module-level pair scrapy-redis expects of a serializer module.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import date, datetime
from typing import Any

from crawler.parsing.site_list import ListLink
from crawler.spiders.wechat_album import _Pending as Pending

# The dataclasses a request's meta may carry, by the name written for them.
_DATACLASSES: dict[str, type[Any]] = {"ListLink": ListLink, "Pending": Pending}
_NAMES = {cls: name for name, cls in _DATACLASSES.items()}


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v) for v in value]}
    if isinstance(value, datetime):  # before date: a datetime is a date
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {"$items": [[_encode(k), _encode(v)] for k, v in value.items()]}
    name = _NAMES.get(type(value))
    if name is not None:
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$dataclass": name, "fields": fields}
    raise TypeError(f"a queued request cannot carry a {type(value).__name__} (crawler.request_codec)")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$bytes":
            return base64.b64decode(inner, validate=True)
        if tag == "$tuple":
            return tuple(_decode(v) for v in inner)
        if tag == "$datetime":
            return datetime.fromisoformat(inner)
        if tag == "$date":
            return date.fromisoformat(inner)
        if tag == "$items":
            return {_decode(k): _decode(v) for k, v in inner}
    if value.keys() == {"$dataclass", "fields"}:
        cls = _DATACLASSES.get(value["$dataclass"])
        if cls is None:
            raise ValueError(f"a queued request names an unknown type {value['$dataclass']!r}")
        return cls(**{k: _decode(v) for k, v in value["fields"].items()})
    if any(isinstance(k, str) and k.startswith("$") for k in value):
        raise ValueError(f"a queued request holds an unknown tag among {sorted(value)[:5]}")
    return {k: _decode(v) for k, v in value.items()}


def dumps(obj: dict[str, Any]) -> bytes:
    """A request's dict (`scrapy.utils.request.request_to_dict`) as JSON bytes."""
    return json.dumps(_encode(obj), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(data: bytes | str) -> dict[str, Any]:
    """The request's dict back; `ValueError` for anything that is not such JSON (a pickle included)."""
    try:
        decoded = _decode(json.loads(data))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ValueError(f"not a queued request of this version (crawler.request_codec): {exc}") from exc
    if not isinstance(decoded, dict):
        raise ValueError("not a queued request of this version (crawler.request_codec): not an object")
    return decoded
