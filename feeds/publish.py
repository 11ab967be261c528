"""Publishing: write the feeds whose content changed into `<public_dir>/feeds/`, atomically.

Layout: `all.<ext>`, `unit/<slug>.<ext>`, `column/<slug>.<ext>`, `topic/<slug>.<ext>` (ext rss,
atom, json), and the directory in three forms: `index.html` for people, `index.opml` for feed
readers and `index.json` for the web app (each feed's kind, name, title, path and the file
name earlier releases used, which the web app redirects to the path).

Owns the files under `<public_dir>/feeds/`, their copies in the database (`published_files`)
and the `feed_states` rows. Every web app serves the database's copy (`archive.views.feeds`), so
web apps on machines other than the scheduler's serve the same feeds under the same validators;
the files stay for nginx and for people reading the folder. A feed is rewritten only when the hash
of what it shows differs from its FeedState (or a file or its copy is missing, or `force`); every
file is written to a temporary file in the same directory and moved into place with os.replace,
so a reader never sees half a feed, and its copy is committed with its FeedState. One publisher
at a time per public directory (a file lock), since the feeds job and a manual run may overlap.
Feeds that are no longer planned (a unit removed) are left in place: subscribers keep a
valid, if frozen, feed rather than a 404.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from filelock import FileLock
from sqlalchemy import Table, select

from feeds.build import FEED_EXTENSIONS, build_feed_documents, feed_hash
from feeds.opml import build_index_html, build_opml
from feeds.selection import load_feed_items, plan_feeds
from pipeline.corpus.db import insert_or_replace
from pipeline.corpus.models import FeedState, PublishedFile

PUBLISHED_FILES = cast(Table, PublishedFile.__table__)

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session, sessionmaker

    from feeds.build import FeedSpec
    from zhuanlan_config import Config

LOCK_TIMEOUT_SECONDS = 600


@dataclass
class PublishResult:
    written: list[str] = field(default_factory=list)  # keys of the feeds (re)written
    unchanged: int = 0
    directory_written: bool = False  # index.opml / index.html / index.json changed (on disk or in the database)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory and os.replace."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)  # mkstemp creates 0600; the web server must be able to read the feed
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def store_copy(session: Session, stored: dict[str, str], path: str, data: bytes, now: datetime) -> bool:
    """Keep the database's copy of the published file `path` (relative to feeds/) equal to `data`;
    `stored` maps each stored path to its sha256 and is kept current. True if the copy changed."""
    digest = hashlib.sha256(data).hexdigest()
    if stored.get(path) == digest:
        return False
    # An upsert: a publisher on another machine (a manual run beside the scheduler's) may store the
    # same new path at the same moment, and neither may fail for it (the file lock is per machine).
    upsert = insert_or_replace(session.get_bind().dialect.name, PUBLISHED_FILES, "path")
    session.execute(upsert, {"path": path, "sha256": digest, "published_at": now, "content": data})
    stored[path] = digest
    return True


def build_index_json(specs: list[FeedSpec]) -> bytes:
    """The machine-readable directory the web app reads: one object per feed, in plan order."""
    feeds = [
        {"key": s.key, "kind": s.kind, "name": s.name, "title": s.title, "filter": s.filter, "path": s.path}
        for s in specs
    ]
    return json.dumps({"version": 1, "feeds": feeds}, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def publish_feeds(
    session_factory: sessionmaker[Session], config: Config, now: datetime, *, force: bool = False
) -> PublishResult:
    """Rebuild every feed whose content changed; also keep index.opml and index.html current."""
    out_dir = config.public_dir / "feeds"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = config.web.base_url
    result = PublishResult()
    with FileLock(str(out_dir / ".publish.lock"), timeout=LOCK_TIMEOUT_SECONDS), session_factory() as session:
        specs = plan_feeds(session, config)
        states = {s.key: s for s in session.scalars(select(FeedState))}
        stored = {
            path: digest for path, digest in session.execute(select(PUBLISHED_FILES.c.path, PUBLISHED_FILES.c.sha256))
        }
        for spec in specs:
            items = load_feed_items(session, spec, config)
            content_hash = feed_hash(spec, items, base)
            names = {ext: f"{spec.path}.{ext}" for ext in FEED_EXTENSIONS}
            paths = {ext: out_dir / name for ext, name in names.items()}
            state = states.get(spec.key)
            if (
                not force
                and state is not None
                and state.content_hash == content_hash
                and all(p.exists() for p in paths.values())
                and all(name in stored for name in names.values())
            ):
                result.unchanged += 1
                continue
            paths["atom"].parent.mkdir(parents=True, exist_ok=True)
            for ext, data in build_feed_documents(spec, items, config, now).items():
                atomic_write(paths[ext], data)
                store_copy(session, stored, names[ext], data, now)
            if state is None:
                state = FeedState(key=spec.key)
                session.add(state)
                states[spec.key] = state
            state.content_hash = content_hash
            state.built_at = now
            state.item_count = len(items)
            # Commit per feed: the state never claims a file that a later failure left unwritten.
            session.commit()
            result.written.append(spec.key)
        title = f"{config.feeds.title_prefix}订阅源"
        directory = {
            "index.opml": build_opml(specs, base, title),
            "index.html": build_index_html(specs, base, title),
            "index.json": build_index_json(specs),
        }
        for name, data in directory.items():
            on_disk = write_if_changed(out_dir / name, data)
            in_database = store_copy(session, stored, name, data, now)
            result.directory_written = result.directory_written or on_disk or in_database
        session.commit()
    return result
