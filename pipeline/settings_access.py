"""Reading zhuanlan's per-run values from Scrapy settings, with plain errors when one is missing.

Owns the names ZHUANLAN_DATABASE_URL, ZHUANLAN_RUN_ID and ZHUANLAN_CONFIG as the pipelines see
them. Must not fall back to `NotConfigured`: that would silently switch a pipeline off and a crawl
would store nothing while exiting 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from pipeline.corpus.db import is_initialised, make_engine, session_factory

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


class PipelineSettingsError(RuntimeError):
    """A per-run setting is missing or wrong; the message says how to give it."""


def database_url(settings: Any) -> str:
    url = str(settings.get("ZHUANLAN_DATABASE_URL") or "").strip()
    if not url:
        raise PipelineSettingsError(
            "ZHUANLAN_DATABASE_URL is not set: run the crawl through `zhuanlan crawl`, or pass "
            "-s ZHUANLAN_DATABASE_URL=sqlite:///data/zhuanlan.db (or set the environment variable)"
        )
    return url


def run_id(settings: Any) -> int | None:
    value = settings.get("ZHUANLAN_RUN_ID")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise PipelineSettingsError(f"ZHUANLAN_RUN_ID must be a crawl_runs id (an integer), got {value!r}") from exc


def config_path(settings: Any) -> str | None:
    value = str(settings.get("ZHUANLAN_CONFIG") or "").strip()
    return value or None


def open_sessions(settings: Any) -> sessionmaker[Session]:
    """A session factory on the configured database; the schema must already exist."""
    url = database_url(settings)
    engine = make_engine(url)
    if not is_initialised(engine):
        engine.dispose()
        shown = make_url(url).render_as_string(hide_password=True)
        raise PipelineSettingsError(f"the database at {shown} has no schema yet: run `zhuanlan init` first")
    return session_factory(engine)
