"""Decoding page bytes to text, once, before any extractor sees them; and refusing garbage.

Owns the charset decision for website pages: HTTP header charset, then a `<meta>` charset in the
head (a `<script charset=…>` does not count), then strict UTF-8, then GB18030. GB2312/GBK labels
are read as GB18030 (its superset), and bytes that are valid UTF-8 win over a declared legacy
charset (many CMS templates keep a stale `charset=gb2312` over UTF-8 bytes). Must not do any I/O.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


class EncodingError(ValueError):
    """The bytes could not be turned into readable text (mojibake or undecodable)."""


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the Python codec name used, e.g. "utf-8", "gb18030"
    source: str  # why: "bom", "override", "header", "meta", "utf-8", "gb18030", "utf-8 (declared X did not fit)"


# Labels that name a subset of GB18030: decoding with the superset never loses a character.
_GB_FAMILY = frozenset(
    {
        "gb2312",
        "gbk",
        "x-gbk",
        "gb_2312-80",
        "gb_2312",
        "cp936",
        "ms936",
        "windows-936",
        "euc-cn",
        "csgb2312",
        "hz-gb-2312",
    }
)
# Single-byte labels that decode any byte string without error, so a failed strict decode
# never reveals that they are wrong; valid multi-byte UTF-8 beats them.
_SINGLE_BYTE = frozenset({"iso8859-1", "cp1252", "ascii", "latin-1", "iso-8859-1", "windows-1252", "us-ascii"})

_CHARSET_PARAM = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.IGNORECASE)
_HEAD_END = re.compile(rb"</head\s*>|<body[\s>]", re.IGNORECASE)
_SKIP_BLOCKS = re.compile(rb"<!--.*?-->|<script\b.*?</script\s*>|<style\b.*?</style\s*>", re.IGNORECASE | re.DOTALL)
_META_TAG = re.compile(rb"<meta\b([^>]*)>", re.IGNORECASE)
_ATTR = re.compile(rb"""([A-Za-z_:][-A-Za-z0-9_:.]*)\s*(?:=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")
_PRESCAN_LIMIT = 64 * 1024


def normalize_charset(label: str | None) -> str | None:
    """A Python codec name for a charset label, GB family mapped to gb18030; None when unknown."""
    if not label:
        return None
    cleaned = label.strip().strip("\"'").lower()
    if cleaned in _GB_FAMILY:
        return "gb18030"
    try:
        name = codecs.lookup(cleaned).name
    except LookupError:
        return None
    if name in {"gb2312", "gbk"}:
        return "gb18030"
    return name


def header_charset(content_type: str | None) -> str | None:
    """The charset parameter of an HTTP Content-Type header value."""
    if not content_type:
        return None
    match = _CHARSET_PARAM.search(content_type.encode("latin-1", "replace"))
    return match.group(1).decode("ascii") if match else None


def meta_charset(body: bytes) -> str | None:
    """The charset a `<meta charset>` or `<meta http-equiv="Content-Type">` declares in the head.

    Comments, scripts and styles are skipped first, so `<script charset="utf-8">` (e.g. a web
    archive's injected toolbar) and commented-out metas do not count.
    """
    head = body[:_PRESCAN_LIMIT]
    end = _HEAD_END.search(head)
    if end:
        head = head[: end.start()]
    head = _SKIP_BLOCKS.sub(b" ", head)
    for tag in _META_TAG.finditer(head):
        attrs = {name.lower(): (value or b"").strip(b"\"'") for name, value in _ATTR.findall(tag.group(1))}
        if attrs.get(b"charset"):
            return attrs[b"charset"].decode("ascii", "replace").strip()
        if attrs.get(b"http-equiv", b"").lower() == b"content-type" and attrs.get(b"content"):
            found = _CHARSET_PARAM.search(attrs[b"content"])
            if found:
                return found.group(1).decode("ascii")
    return None


def _strict(body: bytes, encoding: str) -> str | None:
    try:
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _has_multibyte(body: bytes) -> bool:
    return not body.isascii()


def _declared(body: bytes, header_content_type: str | None, override: str | None) -> Iterator[tuple[str, str | None]]:
    """(source, codec) in order of trust, computed lazily: the meta prescan only runs when it is reached."""
    yield "override", normalize_charset(override)
    yield "header", normalize_charset(header_charset(header_content_type))
    yield "meta", normalize_charset(meta_charset(body))


def decode_html(body: bytes, header_content_type: str | None, override: str | None = None) -> Decoded:
    """Decode page bytes. `override` (a source's `encoding` option) beats everything but a BOM."""
    if body.startswith(codecs.BOM_UTF8):
        return Decoded(body[3:].decode("utf-8", "replace"), "utf-8", "bom")
    for bom, name in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if body.startswith(bom):
            return Decoded(body[2:].decode(name, "replace"), name, "bom")
    utf8 = _strict(body, "utf-8")
    for source, encoding in _declared(body, header_content_type, override):
        if encoding is None:
            continue
        if encoding == "utf-8":
            if utf8 is not None:
                return Decoded(utf8, "utf-8", source)
            text = _strict(body, "gb18030")
            if text is not None:
                return Decoded(text, "gb18030", f"gb18030 (declared {encoding} did not fit)")
            return Decoded(body.decode("utf-8", "replace"), "utf-8", source)
        # Valid multi-byte UTF-8 is almost never legacy-encoded Chinese by accident, so a stale
        # gb2312 meta (or a latin-1 default) over UTF-8 bytes reads as UTF-8.
        if utf8 is not None and _has_multibyte(body) and (source != "override" or encoding in _SINGLE_BYTE):
            return Decoded(utf8, "utf-8", f"utf-8 (declared {encoding} did not fit)")
        text = _strict(body, encoding)
        if text is not None:
            return Decoded(text, encoding, source)
        if encoding != "gb18030":
            text = _strict(body, "gb18030")
            if text is not None:
                return Decoded(text, "gb18030", f"gb18030 (declared {encoding} did not fit)")
        return Decoded(body.decode(encoding, "replace"), encoding, source)
    if utf8 is not None:
        return Decoded(utf8, "utf-8", "utf-8")
    text = _strict(body, "gb18030")
    if text is not None:
        return Decoded(text, "gb18030", "gb18030")
    return Decoded(body.decode("gb18030", "replace"), "gb18030", "gb18030 (with replacements)")


# UTF-8 bytes read as Latin-1 / cp1252: a lead byte C2–EF becomes Â…ï, its continuation bytes
# become C1 controls, symbols or the cp1252 punctuation block.
_CONT = "\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122"
_LATIN_MOJIBAKE = re.compile(f"[\u00c2-\u00ef][{_CONT}]")
# UTF-8 read as GBK: 锛 (，), 銆 (。、), 鐨 (的), 涓 (中)… are rare characters in real text but frequent there.
_GBK_MOJIBAKE = re.compile("[锛銆鐨鏄鍦浜涓鍙鍏鏂鏃鍥瀹紝浠鍒骞澶]")
_CJK = re.compile("[\u4e00-\u9fff]")


def looks_mojibake(text: str) -> bool:
    """True when decoded text is garbage: replacement characters or CJK read through the wrong charset."""
    if not text:
        return False
    replacement = text.count("\ufffd")
    latin = len(_LATIN_MOJIBAKE.findall(text))
    gbk = len(_GBK_MOJIBAKE.findall(text))
    if replacement < 3 and latin < 8 and gbk < 8:
        return False  # no test below can pass: the CJK count (the costly scan) is not needed
    cjk = len(_CJK.findall(text))
    # Measured against the CJK count, not the length: markup dilutes a page's text.
    if replacement >= 3 and replacement > (cjk + replacement) * 0.01:
        return True
    if latin >= 8 and latin > cjk * 0.2:
        return True
    return gbk >= 8 and gbk > cjk * 0.1


# C0 control bytes and DEL, which no text page contains (tab, LF, FF, CR and ESC — ISO-2022 — excepted).
_CONTROL_BYTES = bytes(
    sorted(set(range(0x00, 0x09)) | {0x0B} | set(range(0x0E, 0x1B)) | set(range(0x1C, 0x20)) | {0x7F})
)
_BINARY_SAMPLE = 8192


def looks_binary(body: bytes) -> bool:
    """True when the bytes are not text in any charset: control bytes (NUL…) make more than 1 % of the
    start (an image, an archive or random bytes served as text/html); a stray one or two are tolerated.
    UTF-16 with a BOM is text."""
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    sample = body[:_BINARY_SAMPLE]
    if not sample:
        return False
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))  # bytes deleted = control bytes
    return controls > max(8, len(sample) // 100)


def decode_checked(body: bytes, header_content_type: str | None, override: str | None = None) -> Decoded:
    """`decode_html`, raising `EncodingError` for binary data and when the result looks like mojibake."""
    if looks_binary(body):
        raise EncodingError("the page is binary data, not text (control bytes where text should be)")
    decoded = decode_html(body, header_content_type, override)
    if looks_mojibake(decoded.text):
        raise EncodingError(
            f"text decoded as {decoded.encoding} ({decoded.source}) looks garbled: "
            "the bytes are in a wrong or mixed charset"
        )
    return decoded
