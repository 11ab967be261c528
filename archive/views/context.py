"""What `create_app` hands every view module: configuration, the database, the clock, and paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config


@dataclass(frozen=True)
class ViewContext:
    config: Config
    session_factory: sessionmaker[Session]
    now: Callable[[], datetime]  # the current tz-aware time
    image_fetcher: Callable[[str], tuple[bytes, str]]  # url -> (bytes, content type); tests pass a fake
    feeds_dir: Path  # absolute: where `zhuanlan feeds` publishes
    image_cache_dir: Path  # absolute: proxied images, one file per URL hash
    admin_password: str | None  # None: the operator's pages are disabled

    @property
    def tz(self) -> ZoneInfo:
        return self.config.tz
