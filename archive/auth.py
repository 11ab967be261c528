"""The operator's login: lockout after repeated failures, and server-side sessions.

Owns two things the rate limit (flask-limiter, set up in `archive.views.operator`) cannot do:

- Lockout with a growing delay, kept in the database. flask-limiter counts requests in a window
  and forgets them at restart; a lockout must count *failed* logins only, grow its delay with
  each lock (which no limiter strategy does) and survive a restart of `zhuanlan serve`. Counting
  is one atomic UPDATE, so several waitress threads (and processes) never lose a failure.
- Revocable sessions. Flask's own session is a signed cookie that cannot be taken back; here the
  cookie holds a random id, the row holds its SHA-256, and a session ends on logout, when idle
  too long, at its absolute lifetime, or when the admin password changes (its fingerprint no
  longer matches). No maintained Flask extension stores sessions in our SQLAlchemy models with
  these rules without also moving the CSRF token (kept in Flask's cookie) into the database.

Every failure and lockout is logged and kept as a `LoginEvent` for the health page.

The account-wide lock stops guessing spread over many addresses, but anyone could trip it on
purpose and keep the operator out. So a browser that has logged in before carries a device cookie
(a random id and its HMAC under the app's secret key, unforgeable without it): such a browser is
judged by its own failures only (`device:<id>`, as an address is), not by the address or the
account, and its failures do not count for the account. A stolen device cookie gives a guesser no
more than one address's guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from flask import g
from sqlalchemy import delete, select, update

from pipeline.corpus.db import insert_or_ignore
from pipeline.corpus.models import LoginEvent, LoginLock, OperatorSession

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

log = logging.getLogger("zhuanlan.web.auth")

ACCOUNT = "operator"  # the one account today: the admin password
ADDRESS_FAILURES = 5  # failed logins from one address before it is locked
ACCOUNT_FAILURES = 20  # failed logins on the account (from anywhere) before it is locked
FIRST_LOCK = timedelta(minutes=1)  # doubled at every further lock until a successful login
LONGEST_LOCK = timedelta(hours=1)
EVENTS_KEPT = timedelta(days=90)

DEVICE_COOKIE = "zhuanlan_device"  # a browser that has logged in before (module docstring)
DEVICE_LIFETIME = timedelta(days=365)  # renewed at every login
SESSION_COOKIE = "zhuanlan_operator"
SESSION_IDLE = timedelta(hours=2)  # ended after this long without a request
SESSION_LIFETIME = timedelta(hours=12)  # ended this long after login, however active
_TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often


def _keys(client: str, device: str | None = None) -> list[tuple[str, int]]:
    if device is not None:
        return [(f"device:{device}"[:100], ADDRESS_FAILURES)]
    return [(f"addr:{client}"[:100], ADDRESS_FAILURES), (f"account:{ACCOUNT}", ACCOUNT_FAILURES)]


def _device_mac(secret: str, device: str) -> str:
    return hmac.new(secret.encode(), f"device:{device}".encode(), hashlib.sha256).hexdigest()


def new_device_cookie(secret: str) -> str:
    """The value of a device cookie for a browser that just logged in: a random id and its HMAC."""
    device = secrets.token_urlsafe(16)
    return f"{device}.{_device_mac(secret, device)}"


def known_device(value: str | None, secret: str) -> str | None:
    """The id of the device cookie `value`, if this app's secret key made it; else None."""
    device, _, mac = (value or "").partition(".")
    if not device or not mac or not hmac.compare_digest(mac, _device_mac(secret, device)):
        return None
    return device


def lock_delay(lockouts: int) -> timedelta:
    """How long the `lockouts`-th lock (1, 2, …) lasts: 1 min, 2 min, 4 min, … at most an hour."""
    doublings: int = min(max(lockouts - 1, 0), 16)
    delay: timedelta = FIRST_LOCK * (1 << doublings)
    return min(delay, LONGEST_LOCK)


def locked_until(db: Session, client: str, now: datetime, device: str | None = None) -> datetime | None:
    """The end of the lock on this address or on the account (on a known `device`: on it), if
    either is locked now."""
    keys = [key for key, _ in _keys(client, device)]
    ends = db.scalars(select(LoginLock.locked_until).where(LoginLock.key.in_(keys))).all()
    current = [end for end in ends if end is not None and end > now]
    return max(current) if current else None


def record_failure(db: Session, client: str, now: datetime, device: str | None = None) -> datetime | None:
    """Count a failed login for the address and the account, or for a known `device` alone
    (commits); returns the end of the lock it caused, if it caused one."""
    dialect = db.get_bind().dialect.name
    lock_end: datetime | None = None
    for key, limit in _keys(client, device):
        db.execute(
            insert_or_ignore(dialect, LoginLock.__table__).values(key=key, failures=0, lockouts=0, updated_at=now)
        )
        # One statement: two threads failing at once both count (a read-then-write could lose one).
        db.execute(
            update(LoginLock).where(LoginLock.key == key).values(failures=LoginLock.failures + 1, updated_at=now)
        )
        lock = db.scalars(select(LoginLock).where(LoginLock.key == key)).one()
        db.refresh(lock)
        if lock.failures >= limit:
            lock.lockouts += 1
            lock.failures = 0
            lock.locked_until = now + lock_delay(lock.lockouts)
            lock_end = max(lock_end, lock.locked_until) if lock_end else lock.locked_until
            log.warning("login locked: %s until %s (lock %d)", key, lock.locked_until.isoformat(), lock.lockouts)
    log.warning(
        "login failed from %s for %s%s", client, ACCOUNT, " (a browser that logged in before)" if device else ""
    )
    db.add(LoginEvent(at=now, kind="failure", client=client[:64], account=ACCOUNT, locked_until=None))
    if lock_end is not None:
        db.add(LoginEvent(at=now, kind="lockout", client=client[:64], account=ACCOUNT, locked_until=lock_end))
        db.execute(delete(LoginEvent).where(LoginEvent.at < now - EVENTS_KEPT))
    db.commit()
    return lock_end


def record_success(db: Session, client: str, device: str | None = None) -> None:
    """A successful login clears the address's, the account's and the device's counts and delays (commits)."""
    keys = [key for key, _ in _keys(client)] + ([key for key, _ in _keys(client, device)] if device else [])
    db.execute(delete(LoginLock).where(LoginLock.key.in_(keys)))
    db.commit()


def recent_events(db: Session, limit: int = 20) -> list[LoginEvent]:
    return list(db.scalars(select(LoginEvent).order_by(LoginEvent.at.desc(), LoginEvent.id.desc()).limit(limit)))


@dataclass(frozen=True)
class Sessions:
    """Operator sessions for one app: `secret` keys the password fingerprint."""

    secret: str

    def password_mark(self, password: str) -> str:
        return hmac.new(self.secret.encode("utf-8"), password.encode("utf-8"), hashlib.sha256).hexdigest()

    def start(self, db: Session, password: str, client: str, now: datetime) -> str:
        """A new session (commits); returns the cookie's value, which is stored only as a hash."""
        token = secrets.token_urlsafe(32)
        db.execute(delete(OperatorSession).where(OperatorSession.created_at < now - SESSION_LIFETIME))
        db.add(
            OperatorSession(
                token_hash=_hash(token),
                password_mark=self.password_mark(password),
                client=client[:64],
                created_at=now,
                last_seen_at=now,
            )
        )
        db.commit()
        return token

    def check(self, db: Session, token: str, password: str | None, now: datetime) -> bool:
        """Whether the cookie's session is live: not revoked, not idle too long, not past its
        lifetime, made under the current password. Records the visit (commits when it writes)."""
        if not token or len(token) > 100 or password is None:
            return False
        row = db.scalar(select(OperatorSession).where(OperatorSession.token_hash == _hash(token)))
        if row is None or row.revoked_at is not None:
            return False
        if not hmac.compare_digest(row.password_mark, self.password_mark(password)):
            row.revoked_at = now  # made under another password: revoked for good
            db.commit()
            return False
        if now - row.last_seen_at > SESSION_IDLE or now - row.created_at > SESSION_LIFETIME:
            return False
        if now - row.last_seen_at >= _TOUCH_EVERY:
            row.last_seen_at = now
            db.commit()
        return True

    def revoke(self, db: Session, token: str, now: datetime) -> None:
        """End the cookie's session (commits); a copy of the cookie opens nothing afterwards."""
        if token and len(token) <= 100:
            db.execute(
                update(OperatorSession)
                .where(OperatorSession.token_hash == _hash(token), OperatorSession.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            db.commit()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_operator() -> bool:
    """Whether this request comes with a live operator session (set by `archive.web`)."""
    return bool(g.get("operator", False))
