"""A digest recipient's page: unsubscribing with the token from their mail.

Owns the one write a reader makes: stamping the recipient's opt-out (once; later visits keep
the first time). Must not show or change anything else about the recipient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, abort, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pipeline.corpus.models import Recipient

if TYPE_CHECKING:
    from archive.views.context import ViewContext


def blueprint(ctx: ViewContext) -> Blueprint:
    subscribers = Blueprint("subscribers", __name__)

    @subscribers.route("/unsubscribe/<token>", methods=["GET", "POST"])
    def unsubscribe(token: str) -> str:
        if len(token) > 64:
            abort(404)
        with ctx.session_factory() as db:
            recipient = db.scalar(
                select(Recipient).where(Recipient.unsubscribe_token == token).options(selectinload(Recipient.unit))
            )
            if recipient is None:
                abort(404, description="退订链接无效或已过期。")
            done = False
            if request.method == "POST":
                if recipient.opted_out_at is None:
                    recipient.opted_out_at = ctx.now()
                    db.commit()
                done = True
            return render_template("unsubscribe.html", recipient=recipient, token=token, done=done)

    return subscribers
