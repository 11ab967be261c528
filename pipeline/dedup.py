"""The deduplicate stage: decide what storing a `Record` means (`Record.decision`).

Owns the decision order: (a) the same canonical key is already stored → UNCHANGED / EDIT /
STATE_CHANGE; (b) an article with the same content hash → NEW_APPEARANCE; (c) a near duplicate
(MinHash LSH candidates, each confirmed by `similarity.overlap`) → NEW_APPEARANCE; (d) NEW_STORY.
A match in (b) or (c) with a short body is one story only when `identity.same_story` finds more
evidence (titles, an attachment, a cited origin, a 转载 note): notices that share two sentences of
formula under different titles stay apart.
Reads the database, never writes content: the store writes rows. The only write here is the
one-time upgrade of signatures stored under another scheme.

The LSH index lives in memory, one per `Deduplicator` (the ingest of a crawl holds one for all its
sources). It is built from the *stored signatures* (`articles.minhash`), never from text, and
caught up before each decision with the articles stored since (by this ingest or by a concurrent
crawl), so a story stored a moment ago is found by the next page. With concurrent writers
(PostgreSQL) an article id is drawn at INSERT but becomes visible at COMMIT, so a smaller id can
appear after a larger one was loaded: the ids skipped below the high-water mark are asked for
again at every catch-up until they show up (or stay missing for `GAP_TTL`: a rolled-back insert
never shows up). The decision of a page runs under its dedup locks (`pipeline.locks`), after a
catch-up made once they are held.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, bindparam, func, literal_column, null, select, union_all, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY

from crawler.items import STATE_OK
from pipeline.corpus.models import Appearance, Article
from pipeline.identity import SHORT_BODY_CHARS, Copy, body_chars, same_story
from pipeline.locks import DedupLocks
from pipeline.record import (
    EDIT,
    NEW_APPEARANCE,
    NEW_STORY,
    STATE_CHANGE,
    UNCHANGED,
    Decision,
    Record,
)
from pipeline.similarity import SIGNATURE_SCHEME, SignatureIndex, overlap, signature

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Built once: every item runs these, and building a statement costs more than SQLite takes to run it.
_SIGNATURES_SINCE = (
    select(Article.id, Article.minhash, Article.minhash_scheme)
    .where(Article.id > bindparam("since"))
    .order_by(Article.id)
)
_SIGNATURES_OF = select(Article.id, Article.minhash, Article.minhash_scheme).where(
    Article.id.in_(bindparam("ids", expanding=True))
)
# How long an id skipped by a catch-up is asked for again. A writer's transaction lasts a batch (about
# a second, `pipeline.ingest.MAX_BATCH_SECONDS`) plus its lock waits; an id still missing after this
# was rolled back (PostgreSQL never reuses it). Nor is an id more than GAP_SPAN below the newest
# loaded: a transaction commits within a batch of MAX_BATCH pages, while every other writer draws at
# most a batch of ids, so that would take more than a hundred concurrent writers.
GAP_TTL = 600.0
GAP_SPAN = 8192
_APPEARANCE_BY_KEY = select(Appearance.id, Appearance.article_id, Appearance.content_hash).where(
    Appearance.canonical_key == bindparam("key")
)
# The article whose text has this hash, else the article owning an appearance with it: an article
# whose text was replaced (an edit, a fuller original) still owns its old copies. One statement;
# COALESCE runs the second lookup only when the first finds nothing (both indexed, the appearances'
# since migration 0003).
_ARTICLE_BY_HASH = select(
    func.coalesce(
        select(Article.id)
        .where(Article.content_hash == bindparam("hash"))
        .order_by(Article.id)
        .limit(1)
        .scalar_subquery(),
        select(Appearance.article_id)
        .where(Appearance.content_hash == bindparam("hash"))
        .order_by(Appearance.id)
        .limit(1)
        .scalar_subquery(),
    )
)
_BODY_TEXT = select(Article.body_text).where(Article.id == bindparam("id"))
# Every story that holds this hash (its text, or a copy of an appearance): with a short body the
# first one may be another notice of the same formula, so each is asked in turn.
_ARTICLES_BY_HASH = (
    select(Article.id)
    .where(Article.content_hash == bindparam("hash"))
    .union(select(Appearance.article_id).where(Appearance.content_hash == bindparam("hash")))
)
_HOLDERS = _ARTICLES_BY_HASH.subquery("holders")
# The catch-up and the lookups by key and by hash of one page's decision, in one statement: a round
# trip to the server each is most of what they cost on PostgreSQL, where they run for every page
# after its locks are taken. `part` tells the rows apart: 0 a signature (id, data, scheme), 1 the
# appearance with the page's canonical key (id, owner, hash), 2 `_ARTICLE_BY_HASH`'s answer (id),
# 3 one row per article of `_ARTICLES_BY_HASH` (id).
_CATCH_UP_AND_LOOK = union_all(
    select(
        literal_column("0").label("part"),
        Article.id.label("id"),
        Article.minhash.label("data"),
        Article.minhash_scheme.label("scheme"),
        null().label("owner"),
        null().label("hash"),
    ).where(Article.id > bindparam("since")),
    select(literal_column("1"), Appearance.id, null(), null(), Appearance.article_id, Appearance.content_hash).where(
        Appearance.canonical_key == bindparam("key")
    ),
    select(literal_column("2"), _ARTICLE_BY_HASH.scalar_subquery(), null(), null(), null(), null()),
    select(literal_column("3"), _HOLDERS.c.id, null(), null(), null(), null()),
)
# The same for a group of pages at once (PostgreSQL, under the group's dedup locks: `Deduplicator.hold`):
# the rows of parts 1 to 3 name the key or hash they answer for.
_CATCH_UP_AND_LOOK_MANY = sql_text(
    "SELECT 0 AS part, a.id AS id, a.minhash AS data, a.minhash_scheme AS scheme, NULL::integer AS owner, "
    "NULL::varchar AS hash, NULL::varchar AS key FROM articles a WHERE a.id > :since "
    "UNION ALL "
    "SELECT 1, p.id, NULL, NULL, p.article_id, p.content_hash, p.canonical_key "
    "FROM appearances p WHERE p.canonical_key = ANY(:keys) "
    "UNION ALL "
    "SELECT 2, coalesce("
    "(SELECT a.id FROM articles a WHERE a.content_hash = h.hash ORDER BY a.id LIMIT 1), "
    "(SELECT p.article_id FROM appearances p WHERE p.content_hash = h.hash ORDER BY p.id LIMIT 1)), "
    "NULL, NULL, NULL, h.hash, NULL FROM unnest(:hashes) AS h(hash) "
    "UNION ALL "
    "SELECT 3, held.id, NULL, NULL, NULL, held.hash, NULL FROM ("
    "SELECT a.id AS id, a.content_hash AS hash FROM articles a WHERE a.content_hash = ANY(:hashes) "
    "UNION SELECT p.article_id, p.content_hash FROM appearances p WHERE p.content_hash = ANY(:hashes)) AS held"
).bindparams(bindparam("keys", type_=ARRAY(String)), bindparam("hashes", type_=ARRAY(String)))
_STORY = select(Article.title, Article.body_html, Article.body_text).where(Article.id == bindparam("id"))
_PLACES = select(Appearance.title, Appearance.url, Appearance.canonical_key, Appearance.meta).where(
    Appearance.article_id == bindparam("id")
)


@dataclass(frozen=True)
class Lookups:
    """What the decision of one page reads by its canonical key and by its content hash, read
    together with the catch-up (`StoryIndex.catch_up_and_look`)."""

    appearance: tuple[int, int, str | None] | None  # (id, article id, content hash) of the key's appearance
    by_hash: int | None  # the article `_ARTICLE_BY_HASH` names for the page's content hash
    holders: tuple[int, ...]  # `_ARTICLES_BY_HASH`: every article holding the page's content hash


class StoryIndex:
    """The in-memory LSH over stored signatures plus the high-water mark of articles loaded."""

    def __init__(self) -> None:
        self.signatures = SignatureIndex()
        self.last_article_id = 0
        self.recomputed = 0  # signatures rebuilt from text because their scheme was outdated
        self.gaps: dict[int, float] = {}  # ids skipped below the high-water mark → when first missed
        self.clock = time.monotonic

    def catch_up(self, session: Session, *, store_upgrades: bool = True) -> int:
        """Load signatures of articles stored since the last call, and of those skipped before that
        have been committed since; returns how many were added. A signature of another scheme is
        recomputed from the text; without `store_upgrades` only in memory (no write, no commit:
        the caller holds locks it must keep), and the next writer to build its index stores it."""
        connection = session.connection()
        rows = list(connection.execute(_SIGNATURES_SINCE, {"since": self.last_article_id}).all())
        return self._load(session, rows, store_upgrades=store_upgrades)

    def catch_up_and_look(
        self, session: Session, record: Record, *, store_upgrades: bool = True
    ) -> tuple[int, Lookups | None]:
        """`catch_up`, and the lookups of `record`'s decision read in the same statement. The
        lookups are None when an upgrade of stored signatures committed after they were read (the
        decision then reads them again)."""
        signatures: list[Any] = []
        appearance: tuple[int, int, str | None] | None = None
        by_hash: int | None = None
        holders: list[int] = []
        params = {"since": self.last_article_id, "key": record.item.canonical_key, "hash": record.content_hash}
        for part, row_id, data, scheme, owner, content_hash in session.connection().execute(_CATCH_UP_AND_LOOK, params):
            if int(part) == 0:
                signatures.append((row_id, data, scheme))
            elif int(part) == 1:
                appearance = (row_id, owner, content_hash)
            elif int(part) == 2:
                by_hash = None if row_id is None else int(row_id)
            else:
                holders.append(int(row_id))
        signatures.sort(key=lambda row: row[0])
        upgrades = self.recomputed
        added = self._load(session, signatures, store_upgrades=store_upgrades)
        committed = store_upgrades and self.recomputed != upgrades
        return added, None if committed else Lookups(appearance, by_hash, tuple(holders))

    def catch_up_and_look_many(self, session: Session, records: Sequence[Record]) -> dict[tuple[str, str], Lookups]:
        """`catch_up_and_look` for several records in one statement (PostgreSQL): the lookups by
        (canonical key, content hash). Signatures of another scheme are upgraded in memory only."""
        keys = sorted({record.item.canonical_key for record in records})
        hashes = sorted({record.content_hash for record in records if record.content_hash})
        params = {"since": self.last_article_id, "keys": keys, "hashes": hashes}
        signatures: list[Any] = []
        by_key: dict[str, tuple[int, int, str | None]] = {}
        by_hash: dict[str, int | None] = {}
        holders: dict[str, list[int]] = {}
        for part, row_id, data, scheme, owner, content_hash, key in session.connection().execute(
            _CATCH_UP_AND_LOOK_MANY, params
        ):
            if int(part) == 0:
                signatures.append((row_id, data, scheme))
            elif int(part) == 1:
                by_key[key] = (int(row_id), int(owner), content_hash)
            elif int(part) == 2:
                by_hash[content_hash] = None if row_id is None else int(row_id)
            else:
                holders.setdefault(content_hash, []).append(int(row_id))
        signatures.sort(key=lambda row: row[0])
        self._load(session, signatures, store_upgrades=False)
        return {
            _read_key(record): Lookups(
                by_key.get(record.item.canonical_key),
                by_hash.get(record.content_hash),
                tuple(sorted(holders.get(record.content_hash, ()))),
            )
            for record in records
        }

    def add_own(self, article_id: int, data: bytes) -> None:
        """A story this ingest just stored (in the transaction still open): indexed now, as the
        next catch-up would have loaded it."""
        self.signatures.add(article_id, data)
        self._seen(article_id)

    def _load(self, session: Session, rows: list[Any], *, store_upgrades: bool) -> int:
        connection = session.connection()
        if self.gaps:
            now = self.clock()
            floor = self.last_article_id - GAP_SPAN
            self.gaps = {i: t for i, t in self.gaps.items() if now - t < GAP_TTL and i > floor}
            if self.gaps:
                rows[:0] = connection.execute(_SIGNATURES_OF, {"ids": sorted(self.gaps)}).all()
        stale: list[int] = []
        current: list[tuple[int, bytes]] = []
        for article_id, data, scheme in rows:
            self._seen(article_id)
            if data is None or scheme != SIGNATURE_SCHEME:
                stale.append(article_id)
                continue
            current.append((article_id, data))
        self.signatures.add_many(current)
        if stale:
            self._upgrade(session, stale, store=store_upgrades)
        return len(rows)

    def _seen(self, article_id: int) -> None:
        if article_id in self.gaps:
            del self.gaps[article_id]
            return
        if article_id > self.last_article_id + 1:
            missed = self.clock()
            start = max(self.last_article_id + 1, article_id - GAP_SPAN)
            self.gaps.update(dict.fromkeys(range(start, article_id), missed))
        self.last_article_id = max(self.last_article_id, article_id)

    def _upgrade(self, session: Session, article_ids: list[int], *, store: bool) -> None:
        # Signatures of another scheme cannot be compared with ours (datasketch 2.0 changed its
        # hashing): recompute them once from the stored text and store them under our scheme.
        for article_id, text in session.execute(
            select(Article.id, Article.body_text).where(Article.id.in_(article_ids))
        ).all():
            data = signature(text)
            if store:
                session.execute(
                    update(Article)
                    .where(Article.id == article_id)
                    .values(minhash=data, minhash_scheme=SIGNATURE_SCHEME)
                )
            self.signatures.add(article_id, data)
            self.recomputed += 1
        if store:
            session.commit()

    def reset(self) -> None:
        """Forget everything: the next `catch_up` reloads every stored signature (after a rollback
        the ids seen may be gone, and SQLite gives them to the next articles)."""
        self.signatures = SignatureIndex()
        self.last_article_id = 0
        self.gaps = {}

    def remember(self, article_id: int, data: bytes) -> None:
        """Index one more variant of a known story (an edit or a repost) for the rest of this crawl."""
        self.signatures.add(article_id, data)


def _known_appearance(session: Session, record: Record, lookups: Lookups | None) -> Decision | None:
    # Three columns, not the ORM object: this runs for every item of every crawl.
    if lookups is not None:
        row = lookups.appearance
    else:
        row = session.connection().execute(_APPEARANCE_BY_KEY, {"key": record.item.canonical_key}).first()
    if row is None:
        return None
    appearance_id, article_id, content_hash = row
    ids = {"article_id": article_id, "appearance_id": appearance_id}
    if record.item.state != STATE_OK:
        return Decision(STATE_CHANGE, **ids, reason=f"same key, page now {record.item.state}")
    if content_hash == record.content_hash:
        return Decision(UNCHANGED, **ids, reason="same key, same content")
    return Decision(EDIT, **ids, reason="same key, content changed")


def _incoming(record: Record) -> Copy:
    item = record.item
    return Copy(
        titles=(record.title,),
        body_html=record.body_html,
        body_text=record.body_text,
        addresses=frozenset({item.url, item.canonical_key}),
        cites=frozenset({item.original_url} if item.original_url else ()),
        names=frozenset(name for name in (item.account_name, item.source_label) if name),
    )


def _stored(session: Session, article_id: int) -> Copy | None:
    """The stored story as the identity rule reads it: its title and text, and every appearance's
    title, address and cited origin."""
    connection = session.connection()
    story = connection.execute(_STORY, {"id": article_id}).first()
    if story is None:
        return None
    titles: list[str] = [story.title]
    addresses: set[str] = set()
    cites: set[str] = set()
    names: set[str] = set()
    for title, url, key, meta in connection.execute(_PLACES, {"id": article_id}).all():
        titles.append(title)
        addresses.update((url, key))
        said = meta or {}
        origin = said.get("original_url")
        if isinstance(origin, str) and origin:
            cites.add(origin)
        names.update(str(said[field]) for field in ("account_name", "source_label") if said.get(field))
    return Copy(
        titles=tuple(dict.fromkeys(t for t in titles if t)),
        body_html=story.body_html,
        body_text=story.body_text,
        addresses=frozenset(addresses),
        cites=frozenset(cites),
        names=frozenset(names),
    )


def _why_same(session: Session, record: Record, article_id: int, shared_chars: int) -> str | None:
    """`identity.same_story` of the record and a stored story whose body matches it."""
    if shared_chars >= SHORT_BODY_CHARS:
        return same_story(_incoming(record), Copy(titles=()), shared_chars)
    stored = _stored(session, article_id)
    return None if stored is None else same_story(_incoming(record), stored, shared_chars)


def _same_content(session: Session, record: Record, chars: _BodyChars, lookups: Lookups | None) -> Decision | None:
    connection = session.connection()
    if lookups is not None and lookups.by_hash is None:
        return None  # no story holds the hash (`holders` is then empty too): the length is not needed
    if chars() >= SHORT_BODY_CHARS:  # a long body decides alone: one statement
        if lookups is not None:
            article_id = lookups.by_hash
        else:
            article_id = connection.execute(_ARTICLE_BY_HASH, {"hash": record.content_hash}).scalar()
        if article_id is None:
            return None
        return Decision(NEW_APPEARANCE, article_id=article_id, similarity=1.0, reason="same content hash")
    if lookups is not None:
        holders = set(lookups.holders)
    else:
        holders = set(connection.execute(_ARTICLES_BY_HASH, {"hash": record.content_hash}).scalars())
    for article_id in sorted(holders):
        why = _why_same(session, record, article_id, chars())
        if why is not None:
            return Decision(NEW_APPEARANCE, article_id=article_id, similarity=1.0, reason=f"same content hash, {why}")
    return None


def _near_duplicate(session: Session, record: Record, index: StoryIndex, chars: _BodyChars) -> Decision | None:
    if record.minhash is None:
        return None
    best: tuple[float, int, str] | None = None
    for article_id in index.signatures.candidates(record.minhash):
        text = session.connection().execute(_BODY_TEXT, {"id": article_id}).scalar()
        if text is None:
            continue
        found = overlap(record.body_text, text)
        if found is None or not found.is_duplicate:
            continue
        if best is not None and found.containment <= best[0]:
            continue
        why = _why_same(session, record, article_id, min(chars(), body_chars(text)))
        if why is not None:
            best = (found.containment, article_id, why)
    if best is None:
        return None
    similarity, article_id, why = best
    return Decision(
        NEW_APPEARANCE,
        article_id=article_id,
        similarity=round(similarity, 4),
        reason=f"near duplicate {similarity:.2f}" + ("" if why == "long shared body" else f", {why}"),
    )


class _BodyChars:
    """`identity.body_chars` of the page's text, computed when a match first asks for it: most
    pages of a backfill match nothing, and the length costs a pass over the folded text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.value: int | None = None

    def __call__(self) -> int:
        if self.value is None:
            self.value = body_chars(self.text)
        return self.value


def decide(session: Session, record: Record, index: StoryIndex, lookups: Lookups | None = None) -> Decision | None:
    """What storing `record` means; None for a state page (deleted, …) of an article never stored.
    `lookups`, when given, were read for `record` in this transaction (after its locks)."""
    known = _known_appearance(session, record, lookups)
    if known is not None:
        return known
    if record.item.state != STATE_OK:
        return None
    chars = _BodyChars(record.body_text)
    return (
        _same_content(session, record, chars, lookups)
        or _near_duplicate(session, record, index, chars)
        or Decision(NEW_STORY, reason="nothing similar stored")
    )


def _names(lookups: Lookups, story: int | None) -> bool:
    """Whether `lookups` read anything of the story with id `story`."""
    if story is None:
        return False
    owner = lookups.appearance[1] if lookups.appearance is not None else None
    return story in (owner, lookups.by_hash) or story in lookups.holders


def _read_key(record: Record) -> tuple[str, str]:
    """What a page's lookups answer for: the same key and hash read the same rows."""
    return (record.item.canonical_key, record.content_hash)


class Deduplicator:
    """The deduplicate stage of one ingest: decides what storing each record means, with the
    near-duplicate index over the stories stored so far (by this ingest or any other writer)."""

    def __init__(self, locks: DedupLocks | None = None) -> None:
        self.index = StoryIndex()
        self.locks = locks if locks is not None else DedupLocks("sqlite")
        self._built = False

    def decide(self, session: Session, record: Record, *, wait: bool = True) -> Decision | None:
        """`record.decision`, also returned; None for a state page (deleted…) of an article never
        stored. The record's signature must be computed (`pipeline.precompute`). On PostgreSQL the
        page's dedup locks are taken first, in `session`'s transaction, which must also store the
        page; without `wait`, `locks.LockBusy` says one is held elsewhere (commit, then retry waiting)."""
        loaded = 0
        if self.locks.enabled:
            if not self._built:
                # Builds the index; may commit (stored signature upgrades): before any lock is held,
                # and whatever was held before may be released.
                loaded = self.index.catch_up(session)
                self.locks.forget_held()
            self.locks.take(session, record, wait=wait)
            # Under the locks: what a writer holding them before us committed is loaded now, with
            # the page's lookups (one statement per page: the catch-up before the locks is only the
            # first build's), unless its group read them under the same locks (`hold`).
            read = self.locks.reads.pop(_read_key(record), None) if self.locks.reads is not None else None
            if read is not None:
                added, lookups = 0, read
            else:
                added, lookups = self.index.catch_up_and_look(session, record, store_upgrades=False)
        else:
            added, lookups = self.index.catch_up_and_look(session, record)
        loaded += added
        if not self._built:
            self._built = True
            log.info("near-duplicate index built from %d stored signatures", loaded)
        decision = decide(session, record, self.index, lookups)
        if decision is None:
            return None
        variant = decision.kind == EDIT or (decision.kind == NEW_APPEARANCE and decision.similarity != 1.0)
        if variant and decision.article_id is not None and record.minhash is not None:
            self.index.remember(decision.article_id, record.minhash)
        record.decision = decision
        return decision

    def hold(self, session: Session, records: Sequence[Record]) -> bool:
        """Ahead of deciding a group of pages: their dedup locks in one statement (`DedupLocks.try_all`)
        and, once they are held, the catch-up and every page's lookups in one more; whether it
        could. The lookups stay with the locks (`DedupLocks.reads`) for `decide`, until a page
        stored meanwhile may have changed them (`stored`). Only once the index is built: building
        may commit."""
        if not self.locks.enabled or not self._built or self.locks.reads is None:
            return False
        if not self.locks.try_all(session, records):
            return False
        self.locks.reads.update(self.index.catch_up_and_look_many(session, records))
        return True

    def stored(self, record: Record, story_id: int | None) -> None:
        """`record` was stored (`story_id`: the new story it made) in the transaction that holds its
        group's reads: a new story joins the index (the next catch-up would have loaded it), and the
        reads it may have changed are dropped. A stored page writes rows with its canonical key and
        content hash, and may change the story it joined or edited (its text and hash: a fuller
        original, an edit): reads of the same key or hash, and reads that name that story, are
        dropped; no other read can tell the difference."""
        reads = self.locks.reads
        if not reads or record.decision is None:
            return
        if record.decision.kind == UNCHANGED:
            return
        if record.decision.kind == NEW_STORY and story_id is not None and record.minhash is not None:
            self.index.add_own(story_id, record.minhash)
        key, content_hash = _read_key(record)
        story = record.decision.article_id
        stale = [
            read
            for read, lookups in reads.items()
            if isinstance(read, tuple) and (read[0] == key or read[1] == content_hash or _names(lookups, story))
        ]
        for read in stale:
            del reads[read]

    def forget(self) -> None:
        """After a rolled-back batch: reload every stored signature at the next decision (before
        its locks, as the first build)."""
        self.index.reset()
        self._built = False
