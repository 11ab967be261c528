"""Configuration → database: units, sources and recipients as the config file says.

Owns the upsert rules: rows are matched by their natural key (unit name, source key, recipient
email) and never deleted, because runs, appearances and deliveries point at them. A source
removed from the config is disabled; a recipient removed from it is deactivated; an opt-out
(`opted_out_at`) is never undone by a config change. The caller owns the transaction.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from sqlalchemy import select

from pipeline.corpus.models import Recipient, Source, Unit

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from zhuanlan_config import Config


def sync_config(session: Session, config: Config, now: datetime) -> None:
    units = _sync_units(session, config)
    _sync_sources(session, config, units)
    _sync_recipients(session, config, units)
    session.flush()


def _sync_units(session: Session, config: Config) -> dict[str, Unit]:
    existing = {unit.name: unit for unit in session.scalars(select(Unit))}
    for order, conf in enumerate(config.units):
        unit = existing.get(conf.name)
        if unit is None:
            unit = Unit(name=conf.name)
            session.add(unit)
            existing[conf.name] = unit
        unit.short_name = conf.short_name
        unit.aliases = list(conf.aliases)
        unit.sort_order = order
    session.flush()
    return existing


def _sync_sources(session: Session, config: Config, units: dict[str, Unit]) -> None:
    existing = {source.key: source for source in session.scalars(select(Source))}
    configured = set()
    for conf in config.sources:
        configured.add(conf.key)
        source = existing.get(conf.key)
        if source is None:
            source = Source(key=conf.key, status="new", consecutive_failures=0)
            session.add(source)
        source.kind = conf.kind
        source.url = conf.url
        source.unit_id = units[conf.unit].id if conf.unit else None
        source.column = conf.column
        source.options = dict(conf.options)
        source.enabled = conf.enabled
    for key, source in existing.items():
        if key not in configured:
            source.enabled = False


def _sync_recipients(session: Session, config: Config, units: dict[str, Unit]) -> None:
    existing = {recipient.email.lower(): recipient for recipient in session.scalars(select(Recipient))}
    configured = set()
    for conf in config.recipients:
        email = conf.email.lower()
        configured.add(email)
        recipient = existing.get(email)
        if recipient is None:
            recipient = Recipient(email=conf.email, unsubscribe_token=secrets.token_urlsafe(24))
            session.add(recipient)
            existing[email] = recipient
        recipient.unit_id = units[conf.unit].id
        recipient.name = conf.name
        recipient.columns = list(conf.columns) or None
        # Someone who unsubscribed stays unsubscribed whatever the config says.
        recipient.active = conf.active and recipient.opted_out_at is None
    for email, recipient in existing.items():
        if email not in configured:
            recipient.active = False
