"""Who sees the stories deleted at source: everyone when `feeds.show_deleted`, else the operator only.

The archive keeps such a story (its text, appearances and snapshots); the public pages leave it
out of their lists and answer its page with a "removed at source" notice, like the feeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from archive.auth import is_operator

if TYPE_CHECKING:
    from archive.views.context import ViewContext


def show_deleted(ctx: ViewContext) -> bool:
    """Whether this request may see stories deleted at source (the operator's session is
    `archive.auth`'s to check)."""
    return ctx.config.feeds.show_deleted or is_operator()
