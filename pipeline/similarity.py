"""Near-duplicate arithmetic: shingles, MinHash signatures and the exact confirmation check.

Pure functions over text and bytes. Owns the signature *scheme* (what is hashed and how the
bytes are laid out) and the merge thresholds. Must not touch the database or Scrapy: the
deduplicate pipeline (`pipeline.dedup`) calls these.

Why two signatures per text: MinHash estimates Jaccard similarity, and a repost truncated to
the first half of the original has a Jaccard of only ~0.5 with it, where LSH at threshold 0.5
finds a pair about half of the time (25 bands x 5 rows: P(0.5) = 0.55). So besides the signature of
the whole text we keep one of its first half ("head"); the index holds both and a query uses
both, so a truncated copy meets the other's head at a Jaccard near 1.0 in either direction.

The scheme (SIGNATURE_SCHEME): each character 3-shingle is the integer of its three code points,
21 bits each (`shingle_key`, injective: every code point is below 2^21), and that integer goes
through datasketch's "affine64" step: the MurmurHash3 64-bit finalizer, then a_k * h + b_k mod 2^64
for each of the 128 permutations (a_k, b_k drawn by datasketch from SEED); a signature value is
the minimum over the shingles. It replaced datasketch's default (SHA-1 of each shingle's UTF-8,
one Python call per shingle): this one is computed for the whole text in a few numpy operations,
which makes a signature several times cheaper (issue 11). `signature_parts` gives datasketch MinHash
objects of the same scheme (`update` with a shingle string continues a signature exactly).
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

# numpy's OpenBLAS starts a thread per core when numpy loads, and they spin a while for work that
# never comes (a signature is elementwise arithmetic, no BLAS call): about 0.1 s of CPU per process
# measured, taken from the crawl on the other core. One thread unless the environment says
# otherwise; OpenBLAS reads it only when numpy first loads, and the pipeline worker inherits it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from pipeline.corpus.textsplit import char_class, fold_for_matching

if TYPE_CHECKING:
    from collections.abc import Sequence

    from datasketch import MinHash

NUM_PERM = 128
SHINGLE = 3
SEED = 1
HASH_SCHEME = "affine64"  # datasketch >= 2.0: fmix64, then 64-bit affine permutations; numpy uint64 values
_CODE_BITS = 21  # every Unicode code point is below 0x110000 < 2^21, so SHINGLE of them fit in 63 bits
_PAD = (1 << _CODE_BITS) - 1  # fills a shingle shorter than SHINGLE (a short text): no code point is this
# Stored next to every signature (articles.minhash_scheme): a signature is only comparable with others of
# the same scheme; a different value means "recompute" (pipeline.dedup does that once, from the stored
# text). The previous scheme, "datasketch-2:affine64:mh128:char3:seed1:full+head", hashed each shingle
# with SHA-1 (datasketch's default hash) instead of `shingle_key`.
SIGNATURE_SCHEME = f"zl-1:u{_CODE_BITS}x{SHINGLE}:{HASH_SCHEME}:mh{NUM_PERM}:char{SHINGLE}:seed{SEED}:full+head"
LSH_THRESHOLD = 0.5  # DESIGN.md, Known traps: 99.85 % of reposts found at 0.5, 0 false pairs after confirming

# Confirmation thresholds, measured on tests/fixtures/pipeline (tests/test_pipeline_dedup.py):
#   reposts with another header/footer, formatting changes, small edits, first-half truncations:
#     containment 0.97-1.0, interior containment 0.97-1.0, common runs of 200+ shingles;
#   two notices sharing ~80 % template: containment 0.81 and Jaccard 0.68 (both pass!) but their
#     distinctive middle (dates, people, programme) leaves an interior containment of 0.83;
#   two articles by one unit on one topic: containment 0.11.
# So the containment floor alone would merge the template trap; the interior check decides.
MIN_CONTAINMENT = 0.8
# Share of the smaller text's interior (everything between its first and last shared shingle, i.e.
# without a header or footer of its own) that must be shared with the other text.
MIN_INTERIOR_CONTAINMENT = 0.92
MIN_JACCARD = 0.5
MIN_COMMON_RUN = 200  # shingles in one unbroken shared run: a real passage, not scattered phrases
MIN_SHINGLES = 20  # shorter texts only merge by exact content hash

_EDITOR_NOTE_PREFIXES = ("编者按",)


class _DropTable(dict[int, int | None]):
    """`str.translate` table that deletes punctuation, symbols, separators and controls (Unicode
    categories P, S, Z, C) and keeps everything else; each code point is judged once per process."""

    def __missing__(self, code: int) -> int | None:
        value = None if unicodedata.category(chr(code))[0] in "PSZC" else code
        self[code] = value
        return value


_DROP = _DropTable()
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@cache
def _dropped_run() -> re.Pattern[str]:
    """A run of Basic Multilingual Plane characters that `_DROP` deletes (built once per process from
    this Python's Unicode tables, about 10 ms)."""
    codes = [code for code in range(0x10000) if unicodedata.category(chr(code))[0] in "PSZC"]
    return re.compile(f"[{char_class(codes)}]+")


def _drop_marks(text: str) -> str:
    """`text.translate(_DROP)`: the same characters deleted, by one regular expression where the
    text stays in the Basic Multilingual Plane (a third of the time of translating it character by
    character through the table, measured on the generated articles)."""
    if _ASTRAL.search(text):
        return text.translate(_DROP)
    return _dropped_run().sub("", text)


def compact(text: str, folded: str | None = None) -> str:
    """The text shingles are made of: folded (`fold_for_matching`, NFKC: the stored text is not),
    lower case, no whitespace, punctuation, symbols or controls. `folded`: `fold_for_matching(text)`
    when the caller has it already.

    A line starting with 编者按 (an editor's note shared by every article of a column) is left out:
    it is not part of the article and would make every column article look alike.
    """
    if "编者按" in text:
        lines = [line for line in text.splitlines() if not line.lstrip().startswith(_EDITOR_NOTE_PREFIXES)]
        text, folded = "\n".join(lines), None
    return _drop_marks((fold_for_matching(text) if folded is None else folded).lower())


def shingle_list(text: str, k: int = SHINGLE) -> list[str]:
    """Character k-shingles of the compact text, in order (a text shorter than k is one shingle)."""
    c = compact(text)
    if not c:
        return []
    if len(c) <= k:
        return [c]
    return [c[i : i + k] for i in range(len(c) - k + 1)]


def shingles(text: str, k: int = SHINGLE) -> frozenset[str]:
    return frozenset(shingle_list(text, k))


@cache
def _permutations() -> np.ndarray:
    """The scheme's permutation parameters (a row, b row), drawn once per process as datasketch's
    `MinHash(num_perm=NUM_PERM, seed=SEED, scheme="affine64")` draws them: odd multipliers a below
    2^64, then offsets b, from numpy's legacy generator seeded with SEED (tests compare the two).

    Drawn here rather than by datasketch: signing then needs numpy only, so the crawl process can
    sign pages (`pipeline.precompute`) without importing datasketch and SciPy (0.4 s)."""
    generator = np.random.RandomState(SEED)
    a = generator.randint(0, 1 << 63, NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = generator.randint(0, 1 << 64, NUM_PERM, dtype=np.uint64)
    return np.array([a, b])


@cache
def _permutation_columns() -> tuple[np.ndarray, np.ndarray]:
    """a and b as (NUM_PERM, 1) columns: permuting a row of N hashes gives NUM_PERM rows of N values,
    and numpy takes the minimum along a contiguous row faster than down a column."""
    a, b = _permutations()
    return a.reshape(-1, 1).copy(), b.reshape(-1, 1).copy()


def shingle_key(shingle: str) -> int:
    """The integer a shingle is hashed as: its code points, 21 bits each, first one highest; a shingle
    shorter than SHINGLE (the whole of a text of one or two characters) is padded with `_PAD`.
    Distinct shingles have distinct keys. Also the `hashfunc` of `signature_parts`' MinHashes."""
    if len(shingle) > SHINGLE:
        raise ValueError(f"a shingle has at most {SHINGLE} characters, got {len(shingle)}")
    key = 0
    for code in [ord(char) for char in shingle] + [_PAD] * (SHINGLE - len(shingle)):
        key = key << _CODE_BITS | code
    return key


def _shingle_keys(c: str) -> np.ndarray:
    """`shingle_key` of every shingle of a (non-empty) compact text, in order, as one uint64 array."""
    codes = np.frombuffer(c.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    if codes.size < SHINGLE:
        codes = np.concatenate([codes, np.full(SHINGLE - codes.size, _PAD, dtype=np.uint64)])
    count = codes.size - SHINGLE + 1
    keys = codes[:count].copy()
    for offset in range(1, SHINGLE):
        keys <<= np.uint64(_CODE_BITS)
        keys |= codes[offset : offset + count]
    return keys


_EMPTY = np.full(NUM_PERM, np.iinfo(np.uint64).max, dtype=np.uint64)
_FMIX64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def _mixed(keys: np.ndarray) -> np.ndarray:
    """datasketch's pre-mix of the affine64 scheme: the MurmurHash3 64-bit finalizer of every key."""
    shift, m1, m2 = _FMIX64
    hv: np.ndarray = keys ^ (keys >> shift)
    hv *= m1
    hv ^= hv >> shift
    hv *= m2
    hv ^= hv >> shift
    return hv


_BLOCK = 2048  # hashes permuted at a time: a 2 MB scratch array, however long the text


def _min_permuted(hashes: np.ndarray) -> np.ndarray:
    """min over the (non-empty) hashes of a_k * h + b_k (mod 2^64), for every permutation k: one MinHash part."""
    a, b = _permutation_columns()
    values = _EMPTY.copy()
    for start in range(0, hashes.size, _BLOCK):
        permuted = a * hashes[start : start + _BLOCK]  # (NUM_PERM, block)
        permuted += b
        np.minimum(values, permuted.min(axis=1), out=values)
    return values


def signature(text: str, folded: str | None = None) -> bytes:
    """Serialized signature of a text: the whole text's MinHash, then its first half's (uint64 little-endian).

    The first half is the first half of the shingle sequence, `shingle_list(text)[: max(1, n // 2)]`
    (repeats included: a minimum does not change when a value comes again, so repeated shingles need
    not be dropped). The whole text's minimum is that of the head's and the rest's, so every shingle is
    permuted once. A text without shingles (nothing left after `compact`) has the all-ones signature.
    `folded`: `fold_for_matching(text)`, when the caller has it already.
    """
    c = compact(text, folded)
    if not c:
        return np.concatenate([_EMPTY, _EMPTY]).astype("<u8").tobytes()
    hashes = _mixed(_shingle_keys(c))
    half = max(1, hashes.size // 2)
    with np.errstate(over="ignore"):
        head_values = _min_permuted(hashes[:half])
        full_values = np.minimum(head_values, _min_permuted(hashes[half:])) if half < hashes.size else head_values
    return np.concatenate([full_values, head_values]).astype("<u8").tobytes()


def signature_parts(data: bytes) -> tuple[MinHash, MinHash]:
    """(whole, head) MinHashes of a stored signature; ValueError when the bytes have the wrong size.

    They are datasketch MinHashes of this scheme (`hashfunc=shingle_key`, affine64 permutations from
    SEED): `jaccard` between two of them estimates the Jaccard similarity of the texts' shingle sets,
    and `update(shingle)` adds a shingle (a str) exactly as `signature` would have."""
    from datasketch import MinHash

    values = np.frombuffer(data, dtype="<u8")
    if values.size != 2 * NUM_PERM:
        raise ValueError(f"signature has {values.size} values, expected {2 * NUM_PERM}")
    perms = _permutations()
    full = MinHash(
        num_perm=NUM_PERM,
        seed=SEED,
        hashvalues=values[:NUM_PERM].astype(np.uint64),
        hashfunc=shingle_key,
        scheme=HASH_SCHEME,
        permutations=perms,
    )
    head = MinHash(
        num_perm=NUM_PERM,
        seed=SEED,
        hashvalues=values[NUM_PERM:].astype(np.uint64),
        hashfunc=shingle_key,
        scheme=HASH_SCHEME,
        permutations=perms,
    )
    return full, head


# (bands, rows) of the LSH: what datasketch's MinHashLSH picks for LSH_THRESHOLD and NUM_PERM (it
# integrates the false positive and negative probabilities with SciPy; tests check it still picks
# these). Written out so that the pipeline worker need not import datasketch and SciPy (0.4 s).
LSH_BANDS = (25, 5)


# Odd 64-bit multipliers that fold a band's `rows` values into one 64-bit band key.
_BAND_MULTIPLIERS = np.random.default_rng(SEED).integers(0, 2**63, 16, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def band_keys(values: np.ndarray) -> np.ndarray:
    """One uint64 per LSH band of a signature part (128 values): two parts share a key in a band
    exactly when they agree on all of that band's values (up to a 2^-64 chance of a false key match,
    which the exact `overlap` check behind every candidate absorbs)."""
    keys: np.ndarray = _band_keys_of_rows(values[np.newaxis, :])[0]
    return keys


def _band_keys_of_rows(values: np.ndarray) -> np.ndarray:
    """`band_keys` of every row of `values` (parts × 128): parts × bands."""
    bands, rows = LSH_BANDS
    grid = values[:, : bands * rows].astype(np.uint64).reshape(len(values), bands, rows)
    with np.errstate(over="ignore"):
        folded: np.ndarray = (grid * _BAND_MULTIPLIERS[:rows]).sum(axis=2, dtype=np.uint64)
        folded ^= folded >> np.uint64(29)
        folded *= np.uint64(0xBF58476D1CE4E5B9)
        folded ^= folded >> np.uint64(32)
    return folded


class SignatureIndex:
    """In-memory LSH over stored signatures; keys are article ids (each indexed by whole and head).

    Banding as datasketch's MinHashLSH does it (same bands and rows, so the same candidates), but
    stored as one uint64 key per band: about 300 bytes per signature part (two parts a story) instead of the ~15 KB of
    datasketch's dicts of byte strings and sets. The keys sit in one sorted array per band (with
    the owning article ids beside them), so a query is a binary search per band whatever the
    corpus: a linear scan of the whole table cost 0.2 µs per stored story and page, 200 ms a page
    at a million stories. Signatures added since the last sort wait in a small table that queries
    scan; it is merged into the sorted arrays when it grows (all at once after a bulk load, such as
    the first catch-up of a crawl, which adds every stored signature before the first query).
    """

    # Rows the unsorted table holds before a query merges it: a scan of 4,096 rows costs about as
    # much as the binary searches, and a merge (an insert into each sorted band) is a copy of them.
    RECENT_MAX = 4096

    def __init__(self) -> None:
        bands, _rows = LSH_BANDS
        self._keys = np.zeros((bands, 0), dtype=np.uint64)  # per band, sorted
        self._owners = np.zeros((bands, 0), dtype=np.int32)  # the article of each key, per band (ids are int32)
        self._ids: set[int] = set()
        self._empty_recent()

    def _empty_recent(self) -> None:
        """The band keys of the parts added since the last merge, a column each (grown by doubling).
        Band by band in memory: a query compares each band's keys with its own key in one pass,
        five times cheaper than a reduction along every short row (measured: 80 µs against 408 µs
        for 4,000 parts)."""
        self._recent = np.zeros((LSH_BANDS[0], 1024), dtype=np.uint64)
        self._recent_owners = np.zeros(1024, dtype=np.int32)
        self._size = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, article_id: object) -> bool:
        return article_id in self._ids

    def add(self, article_id: int, data: bytes) -> None:
        """Index one more signature of an article (an article may keep several: original, edits, reposts)."""
        self.add_many([(article_id, data)])

    def add_many(self, signatures: Sequence[tuple[int, bytes]]) -> None:
        """`add` for many (article id, signature) at once, their band keys computed together: a
        crawl's first catch-up loads every stored signature (a million at a province's size)."""
        for start in range(0, len(signatures), 20_000):
            chunk = signatures[start : start + 20_000]
            if len(chunk) == 1:
                keys = signature_band_keys(chunk[0][1])  # the page's, computed already by its query
            else:
                # one row per part: whole, head, whole, head…, as `add` appends them
                values = np.frombuffer(b"".join(data for _, data in chunk), dtype="<u8")
                keys = _band_keys_of_rows(values.reshape(2 * len(chunk), NUM_PERM))
            owners = np.repeat(np.asarray([article_id for article_id, _ in chunk], dtype=np.int32), 2)
            while self._size + len(owners) > len(self._recent_owners):
                self._recent = np.concatenate([self._recent, np.zeros_like(self._recent)], axis=1)
                self._recent_owners = np.concatenate([self._recent_owners, np.zeros_like(self._recent_owners)])
            self._recent[:, self._size : self._size + len(owners)] = keys.T
            self._recent_owners[self._size : self._size + len(owners)] = owners
            self._size += len(owners)
            self._ids.update(article_id for article_id, _ in chunk)

    def _merge(self) -> None:
        """Move the recent parts into the sorted bands: a sort of everything when they are many
        (a bulk load), else an insert of the few at their places."""
        keys = self._recent[:, : self._size].copy()  # (bands, n)
        owners = self._recent_owners[: self._size].copy()
        bands = keys.shape[0]
        self._empty_recent()
        if keys.shape[1] * 8 >= self._keys.shape[1]:
            all_keys = np.concatenate([self._keys, keys], axis=1)
            all_owners = np.concatenate([self._owners, np.broadcast_to(owners, keys.shape)], axis=1)
            order = np.argsort(all_keys, axis=1)  # equal keys in any order: candidates are a set
            self._keys = np.take_along_axis(all_keys, order, axis=1)
            self._owners = np.take_along_axis(all_owners, order, axis=1)
            return
        merged_keys, merged_owners = [], []
        for band in range(bands):
            order = np.argsort(keys[band], kind="stable")
            at = np.searchsorted(self._keys[band], keys[band][order], side="right")
            merged_keys.append(np.insert(self._keys[band], at, keys[band][order]))
            merged_owners.append(np.insert(self._owners[band], at, owners[order]))
        self._keys, self._owners = np.stack(merged_keys), np.stack(merged_owners)

    def candidates(self, data: bytes) -> list[int]:
        """Article ids whose signatures collide with `data` in some LSH band (unconfirmed)."""
        if self._size > self.RECENT_MAX:
            self._merge()
        queries = signature_band_keys(data).T  # (bands, 2)
        found: set[int] = set()
        stored = self._keys.shape[1]
        if stored:
            # Where each query key would go in its band; it is there only if the key at that place
            # equals it (most queries meet no key at all), and only then is its run's end looked up.
            low = np.stack([keys.searchsorted(queries[band]) for band, keys in enumerate(self._keys)])
            there = np.take_along_axis(self._keys, np.minimum(low, stored - 1), axis=1) == queries
            for band, half in zip(*np.nonzero(there), strict=True):
                stop = self._keys[band].searchsorted(queries[band, half], side="right")
                found.update(self._owners[band, low[band, half] : stop].tolist())
        if self._size:
            table = self._recent[:, : self._size]
            match = table == queries[:, :1]
            match |= table == queries[:, 1:]
            if match.any():
                found.update(self._recent_owners[np.flatnonzero(match.any(axis=0))].tolist())
        return sorted(found)


def signature_halves(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The 128 values of the whole text's signature and the 128 of its first half's."""
    values = _signature_values(data)
    return values[:NUM_PERM], values[NUM_PERM:]


def _signature_values(data: bytes) -> np.ndarray:
    values = np.frombuffer(data, dtype="<u8")
    if values.size != 2 * NUM_PERM:
        raise ValueError(f"signature has {values.size} values, expected {2 * NUM_PERM}")
    return values


@lru_cache(maxsize=256)
def signature_band_keys(data: bytes) -> np.ndarray:
    """`band_keys` of both parts of a serialized signature at once: (2, bands), whole text first;
    read-only. A page's are asked for by its query, its locks and its indexing: kept for the last
    pages."""
    keys = _band_keys_of_rows(_signature_values(data).reshape(2, NUM_PERM))
    keys.flags.writeable = False
    return keys


@dataclass(frozen=True)
class Overlap:
    containment: float  # |A ∩ B| / min(|A|, |B|)
    interior_containment: float  # shared share of the smaller text between its first and last shared shingle
    jaccard: float
    common_run: int  # longest unbroken run of shared shingles in the smaller text

    @property
    def is_duplicate(self) -> bool:
        return (
            self.containment >= MIN_CONTAINMENT
            and self.interior_containment >= MIN_INTERIOR_CONTAINMENT
            and (self.jaccard >= MIN_JACCARD or self.common_run >= MIN_COMMON_RUN)
        )


def overlap(a_text: str, b_text: str) -> Overlap | None:
    """Exact overlap of two texts' shingles; None when either is too short to judge."""
    seq_a, seq_b = shingle_list(a_text), shingle_list(b_text)
    set_a, set_b = frozenset(seq_a), frozenset(seq_b)
    if len(set_a) < MIN_SHINGLES or len(set_b) < MIN_SHINGLES:
        return None
    common = set_a & set_b
    small_seq, large_set = (seq_a, set_b) if len(set_a) <= len(set_b) else (seq_b, set_a)
    shared = [s in large_set for s in small_seq]
    try:
        first = shared.index(True)
    except ValueError:
        return Overlap(0.0, 0.0, 0.0, 0)
    last = len(shared) - 1 - shared[::-1].index(True)
    interior = shared[first : last + 1]
    longest = run = 0
    for flag in shared:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return Overlap(
        containment=len(common) / min(len(set_a), len(set_b)),
        interior_containment=sum(interior) / len(interior),
        jaccard=len(common) / len(set_a | set_b),
        common_run=longest,
    )
