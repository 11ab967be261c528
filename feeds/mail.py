"""The digest's mail transport and its exactly-once delivery loop.

Owns the `digests` and `deliveries` rows and talking to SMTP. Every column has its own digest,
sent to the recipients subscribed to it (`[[recipients]] columns`, default every column).
Exactly-once rests on the rows: one Digest per (column, ISO week), one Delivery per (digest,
recipient), so one mail per (recipient, column, week), both get-or-create
safe under a race (insert, and on a unique violation read the winner's row). Before a
message is handed to SMTP its delivery is marked `sending` (attempts + 1, Message-ID
fixed) in its own committed transaction; `sent` is recorded after the server accepted it.
A delivery found in `sending` at start was interrupted mid-send: whether the server took
it cannot be known, so it is re-sent with the same Message-ID (receivers dedupe on it).

Responses: 4xx and connection errors are retried with exponential back-off up to
`smtp.max_attempts` tries per run; 5xx marks the delivery `failed` for good (no retry, also
not on later runs). When the server stays unreachable the delivery goes back to `pending`
and the run stops with `MailTransportError` (the recipient is not at fault; the next run
continues); so do authentication and STARTTLS problems, which are configuration errors.

With `digest.review = "required"` the office's approval gates all of this (`feeds.review`):
`send_digest` sends only the approved, unchanged issue (`NotApproved` otherwise) and
`send_owed_digests` reminds the operator once or skips the issue at the deadline instead.

The operator copy (`digest.operator_email`) is not a Recipient (it belongs to no unit and
must not appear in recipient lists), so its delivery state is recorded in
`Digest.summary["operator_delivery"]` with the same states and the same guarantees; it gets
every column's digest. Unsubscribing stops every column's digest.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from feeds.digest import DigestRecipient, RenderedDigest, iso_week_bounds, owed_weeks, render_digest
from feeds.review import REMIND, SEND, SKIP, WAIT, apply_review, decide, default_column, reminder_text
from feeds.review_store import approved_data, load_issue, load_review, mark_reminded, mark_skipped
from feeds.selection import column_started, digest_columns, load_digest_data
from feeds.slugs import assign_slugs
from pipeline.corpus.db import transaction
from pipeline.corpus.models import Delivery, Digest, Recipient

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session, sessionmaker

    from feeds.digest import DigestData
    from feeds.review_store import Issue
    from zhuanlan_config import Config, SmtpConf

log = logging.getLogger(__name__)

SmtpFactory = Callable[[], smtplib.SMTP]

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 300.0
OPERATOR_KEY = "operator_delivery"
RESUMED_NOTE = "re-sent after an interrupted attempt, same Message-ID"
MAIL_POLICY = policy.default.clone(cte_type="7bit")
CA_FILE_ENV = "ZHUANLAN_SMTP_CA_FILE"


class MailTransportError(RuntimeError):
    """SMTP cannot be used at all (unreachable, authentication, STARTTLS): the run stops."""


@dataclass
class SendResult:
    sent: int = 0  # sent by this call
    failed: int = 0  # in state failed after this call
    skipped: int = 0  # opted out (or deactivated before their copy went out)
    already: int = 0  # sent by an earlier call

    def __add__(self, other: SendResult) -> SendResult:
        return SendResult(
            self.sent + other.sent,
            self.failed + other.failed,
            self.skipped + other.skipped,
            self.already + other.already,
        )


# --- messages --------------------------------------------------------------------------


def build_message(
    rendered: RenderedDigest,
    recipient: DigestRecipient,
    config: Config,
    message_id_domain: str,
    *,
    message_id: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML), 7-bit clean for any SMTP server."""
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["Subject"] = rendered.subject
    msg["From"] = Address(display_name=config.smtp.from_name, addr_spec=config.smtp.from_addr)
    msg["To"] = Address(display_name=recipient.name, addr_spec=recipient.email)
    msg["Date"] = format_datetime(date or datetime.now(config.tz))
    msg["Message-ID"] = message_id or make_msgid(domain=message_id_domain)
    msg["Auto-Submitted"] = "auto-generated"  # keeps vacation responders quiet
    if rendered.unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{rendered.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # base64 for Chinese bodies, chosen up front: left to choose, the email package trial-encodes
    # the (long-lined) HTML as quoted-printable in pure Python first, which dominated the time to
    # build a digest (bench/digest_bench.py); QP would also be about twice the size for Chinese.
    msg.set_content(rendered.text, cte=None if rendered.text.isascii() else "base64")
    msg.add_alternative(rendered.html, subtype="html", cte=None if rendered.html.isascii() else "base64")
    return msg


def tls_context() -> ssl.SSLContext:
    """Certificate and host name checks always on; the trusted CAs are the system's, or the PEM
    file named by `ZHUANLAN_SMTP_CA_FILE` (a private CA or a self-signed relay certificate)."""
    ca_file = os.environ.get(CA_FILE_ENV) or None
    return ssl.create_default_context(cafile=ca_file)


def connect_smtp(conf: SmtpConf) -> smtplib.SMTP:
    """A connected (and, when configured, encrypted and logged-in) SMTP client."""
    smtp: smtplib.SMTP
    if conf.security == "ssl":
        smtp = smtplib.SMTP_SSL(conf.host, conf.port, timeout=conf.timeout_seconds, context=tls_context())
    else:
        smtp = smtplib.SMTP(conf.host, conf.port, timeout=conf.timeout_seconds)
        if conf.security == "starttls":
            try:
                smtp.starttls(context=tls_context())
            except BaseException:
                smtp.close()
                raise
    password = conf.password()
    if conf.user and password:
        try:
            smtp.login(conf.user, password)
        except UnicodeEncodeError as exc:
            smtp.close()
            # smtplib encodes AUTH PLAIN/LOGIN as ASCII; say so instead of crashing with a traceback.
            raise MailTransportError(
                f"SMTP {conf.host}:{conf.port}: the user name and password must be ASCII for SMTP AUTH"
            ) from exc
        except BaseException:
            smtp.close()
            raise
    return smtp


# --- SMTP session with rate limit and error classes ------------------------------------


class _Transient(Exception):
    def __init__(self, reason: str, *, connection: bool) -> None:
        super().__init__(reason)
        self.connection = connection


class _Permanent(Exception):
    pass


def _code_error(code: int, text: bytes | str) -> Exception:
    reason = f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}".strip()
    if 500 <= code < 600:
        return _Permanent(reason)
    return _Transient(reason, connection=False)


class _Sender:
    """One reused SMTP connection, reopened after any error; at most max_per_minute sends."""

    def __init__(self, conf: SmtpConf, factory: SmtpFactory, sleep: Callable[[float], None]) -> None:
        self.conf = conf
        self.factory = factory
        self.sleep = sleep
        self.interval = 60.0 / conf.max_per_minute
        self.last_send: float | None = None
        self.conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self.conn is None:
            try:
                self.conn = self.factory()
            except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError) as exc:
                raise MailTransportError(f"SMTP {self.conf.host}:{self.conf.port}: {exc}") from exc
            except ssl.SSLCertVerificationError as exc:
                # A configuration problem, not a passing one: retrying cannot help.
                raise MailTransportError(
                    f"SMTP {self.conf.host}:{self.conf.port}: certificate not trusted ({exc.verify_message});"
                    f" set {CA_FILE_ENV} to the CA's PEM file if the relay uses a private CA"
                ) from exc
            except (smtplib.SMTPException, OSError) as exc:
                raise _Transient(
                    f"cannot connect to {self.conf.host}:{self.conf.port}: {exc}", connection=True
                ) from exc
        return self.conn

    def _throttle(self) -> None:
        if self.last_send is not None:
            wait = self.last_send + self.interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
        self.last_send = time.monotonic()

    def send(self, msg: EmailMessage, to_addr: str) -> None:
        conn = self._connect()
        self._throttle()
        try:
            conn.send_message(msg, from_addr=self.conf.from_addr, to_addrs=[to_addr])
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            code, text = next(iter(exc.recipients.values()), (450, b"recipient refused"))
            raise _code_error(code, text) from exc
        except smtplib.SMTPServerDisconnected as exc:
            self.close()
            raise _Transient(f"connection lost: {exc}", connection=True) from exc
        except smtplib.SMTPResponseException as exc:  # sender refused, data error, ...
            self.close()
            raise _code_error(exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise _Transient(f"SMTP error: {exc}", connection=True) from exc

    def close(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()  # the server already went away; just drop the socket


class _Clock:
    """`now` advanced by the time elapsed since the run started (sending can take minutes)."""

    def __init__(self, now: datetime) -> None:
        self.start = now
        self.mono = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.mono)


# --- delivery state ----------------------------------------------------------------------


@dataclass
class _Target:
    recipient: DigestRecipient
    operator: bool
    delivery_id: int | None  # None: the operator copy, recorded in Digest.summary
    status: str
    attempts: int


def _read_state(session: Session, digest_id: int, target: _Target) -> dict[str, Any]:
    if target.delivery_id is not None:
        d = session.get(Delivery, target.delivery_id, with_for_update=True)
        if d is None:
            raise LookupError(f"delivery {target.delivery_id} vanished")
        return {
            "status": d.status,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "message_id": d.message_id,
            "sent_at": d.sent_at,
        }
    digest = session.get(Digest, digest_id, with_for_update=True)
    if digest is None:
        raise LookupError(f"digest {digest_id} vanished")
    raw = dict((digest.summary or {}).get(OPERATOR_KEY) or {})
    sent_at = raw.get("sent_at")
    return {
        "status": raw.get("status", "pending"),
        "attempts": int(raw.get("attempts", 0)),
        "last_error": raw.get("last_error"),
        "message_id": raw.get("message_id"),
        "sent_at": datetime.fromisoformat(sent_at) if sent_at else None,
    }


def _write_state(session: Session, digest_id: int, target: _Target, state: dict[str, Any], now: datetime) -> None:
    if target.delivery_id is not None:
        d = session.get(Delivery, target.delivery_id)
        assert d is not None  # read under the same transaction just before
        d.status, d.attempts, d.last_error = state["status"], state["attempts"], state["last_error"]
        d.message_id, d.sent_at, d.updated_at = state["message_id"], state["sent_at"], now
        return
    digest = session.get(Digest, digest_id)
    assert digest is not None
    sent_at = state["sent_at"]
    # A new dict: in-place changes to a JSON column are not detected by SQLAlchemy.
    digest.summary = {
        **(digest.summary or {}),
        OPERATOR_KEY: {
            "email": target.recipient.email,
            "status": state["status"],
            "attempts": state["attempts"],
            "last_error": state["last_error"],
            "message_id": state["message_id"],
            "sent_at": sent_at.isoformat() if sent_at else None,
            "updated_at": now.isoformat(),
        },
    }


def _claim(
    factory: sessionmaker[Session], digest_id: int, target: _Target, expected_attempts: int, now: datetime, domain: str
) -> str | None:
    """Mark `sending`, attempts + 1, and fix the Message-ID, committed before SMTP is touched.

    Returns the Message-ID, or None when another sender moved the delivery on meanwhile.
    """
    with transaction(factory) as session:
        state = _read_state(session, digest_id, target)
        if state["status"] not in ("pending", "sending") or state["attempts"] != expected_attempts:
            return None
        state["status"] = "sending"
        state["attempts"] += 1
        state["message_id"] = state["message_id"] or make_msgid(domain=domain)
        _write_state(session, digest_id, target, state, now)
        return str(state["message_id"])


def _finish(
    factory: sessionmaker[Session],
    digest_id: int,
    target: _Target,
    status: str,
    now: datetime,
    *,
    error: str | None = None,
    sent_at: datetime | None = None,
) -> None:
    with transaction(factory) as session:
        state = _read_state(session, digest_id, target)
        state["status"] = status
        state["last_error"] = error
        state["sent_at"] = sent_at
        _write_state(session, digest_id, target, state, now)


def _find_digest(session: Session, column: str, week: str) -> Digest | None:
    return session.scalar(select(Digest).where(Digest.column == column, Digest.week == week))


def _get_or_create_digest(factory: sessionmaker[Session], data: DigestData, now: datetime) -> int:
    with factory() as session:
        found = _find_digest(session, data.column, data.week)
    if found is not None:
        return found.id
    try:
        with transaction(factory) as session:
            digest = Digest(
                column=data.column,
                week=data.week,
                period_start=data.period_start,
                period_end=data.period_end,
                created_at=now,
                article_count=data.total_week,
                summary={
                    "units_this_week": len(data.contributed_week),
                    "units_so_far": len(data.contributed_so_far),
                    "units_not_yet": len(data.not_yet),
                    "units_silent_week": len(data.silent_week),
                    "units_failed_week": len(data.failed_week),
                    "total_so_far": data.total_so_far,
                    "failed_sources": len(data.failed_sources),
                },
            )
            session.add(digest)
            session.flush()
            digest_id = digest.id
    except IntegrityError:
        # Another process created this column's week's digest between our read and insert: use theirs.
        with factory() as session:
            theirs = _find_digest(session, data.column, data.week)
            if theirs is None:
                raise
            digest_id = theirs.id
    return digest_id


def _get_or_create_delivery(
    factory: sessionmaker[Session], digest_id: int, recipient_id: int, status: str, now: datetime
) -> tuple[int, str, int]:
    """(id, status, attempts) of the (digest, recipient) delivery, inserted if missing."""
    try:
        with transaction(factory) as session:
            delivery = Delivery(
                digest_id=digest_id, recipient_id=recipient_id, status=status, attempts=0, updated_at=now
            )
            session.add(delivery)
            session.flush()
            return delivery.id, delivery.status, delivery.attempts
    except IntegrityError:
        # A concurrent run inserted it first: the unique (digest, recipient) keeps one row.
        with factory() as session:
            found = session.scalars(
                select(Delivery).where(Delivery.digest_id == digest_id, Delivery.recipient_id == recipient_id)
            ).one()
            return found.id, found.status, found.attempts


def _recipients(session: Session) -> list[Recipient]:
    return list(session.scalars(select(Recipient).options(selectinload(Recipient.unit)).order_by(Recipient.id)))


def subscribed(recipient: Recipient, column: str) -> bool:
    """Whether the recipient gets `column`'s digest: every column unless `columns` names some."""
    return recipient.columns is None or column in recipient.columns


def _operator(config: Config) -> DigestRecipient | None:
    email = config.digest.operator_email
    return DigestRecipient(name="运维值班", email=email) if email else None


def _prepare_targets(
    factory: sessionmaker[Session], digest_id: int, column: str, config: Config, now: datetime
) -> list[_Target]:
    with factory() as session:
        recipients = _recipients(session)
        existing = {
            d.recipient_id: (d.id, d.status, d.attempts)
            for d in session.scalars(select(Delivery).where(Delivery.digest_id == digest_id))
        }
        operator_state = _read_state(session, digest_id, _Target(DigestRecipient("", ""), True, None, "", 0))
    targets = []
    for r in recipients:
        wanted = r.active and r.opted_out_at is None and subscribed(r, column)
        row = existing.get(r.id)
        if row is None:
            if not r.active or not subscribed(r, column):
                continue
            row = _get_or_create_delivery(factory, digest_id, r.id, "pending" if wanted else "skipped", now)
        target = _Target(DigestRecipient.from_model(r), False, *row)
        if not wanted and target.status in ("pending", "sending"):
            # Opted out (or deactivated, or left the column) after the row was made, before the copy went out.
            why = "opted out before sending" if subscribed(r, column) else "not subscribed to the column"
            _finish(factory, digest_id, target, "skipped", now, error=why)
            target.status = "skipped"
        targets.append(target)
    operator = _operator(config)
    if operator is not None:
        targets.append(_Target(operator, True, None, operator_state["status"], operator_state["attempts"]))
    return targets


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS))


def _deliver(
    factory: sessionmaker[Session],
    config: Config,
    digest_id: int,
    target: _Target,
    data: DigestData,
    sender: _Sender,
    clock: _Clock,
    domain: str,
    sleep: Callable[[float], None],
) -> str:
    """Send one copy; returns its final status for this run (sent | failed | pending | gone)."""
    rendered = render_digest(data, target.recipient, operator=target.operator, base_url=config.web.base_url)
    resumed = target.status == "sending"
    expected = target.attempts
    max_attempts = config.smtp.max_attempts
    for attempt in range(1, max_attempts + 1):
        message_id = _claim(factory, digest_id, target, expected, clock.now(), domain)
        if message_id is None:
            return "gone"
        expected += 1
        if resumed:
            log.warning(
                "digest %s %s to %s: %s %s", data.column, data.week, target.recipient.email, RESUMED_NOTE, message_id
            )
        msg = build_message(rendered, target.recipient, config, domain, message_id=message_id, date=clock.now())
        try:
            sender.send(msg, target.recipient.email)
        except _Permanent as exc:
            _finish(factory, digest_id, target, "failed", clock.now(), error=str(exc))
            return "failed"
        except _Transient as exc:
            last = attempt == max_attempts
            if last and exc.connection:
                _finish(factory, digest_id, target, "pending", clock.now(), error=str(exc))
                raise MailTransportError(f"giving up for now after {attempt} attempts: {exc}") from exc
            if last:
                _finish(factory, digest_id, target, "failed", clock.now(), error=f"after {attempt} attempts: {exc}")
                return "failed"
            _finish(factory, digest_id, target, "pending", clock.now(), error=str(exc))
            sleep(_backoff(attempt))
            continue
        except MailTransportError as exc:
            _finish(factory, digest_id, target, "pending", clock.now(), error=str(exc))
            raise
        _finish(
            factory,
            digest_id,
            target,
            "sent",
            clock.now(),
            error=RESUMED_NOTE if resumed else None,
            sent_at=clock.now(),
        )
        return "sent"
    return "pending"  # max_attempts < 1 cannot happen (config minimum is 1)


def reviewed_data(session: Session, config: Config, data: DigestData, *, gate: bool = True) -> DigestData:
    """`data` with the office's review of its (column, week) applied (intro, pins, stories left
    out); with review required and `gate`, only when this content was approved (`NotApproved`
    otherwise)."""
    column = data.column or default_column(config)
    if gate and config.digest.review == "required":
        return approved_data(session, config, data, column)
    return apply_review(data, load_review(session, column, data.week))


def _dry_run(session_factory: sessionmaker[Session], config: Config, week: str, column: str) -> SendResult:
    """What a real run would do for one column's digest, without writing anything."""
    result = SendResult()
    with session_factory() as session:
        digest = _find_digest(session, column, week)
        statuses: dict[int, str] = {}
        if digest is not None:
            statuses = {
                d.recipient_id: d.status
                for d in session.scalars(select(Delivery).where(Delivery.digest_id == digest.id))
            }
        recipients = _recipients(session)
    for r in recipients:
        status = statuses.get(r.id)
        if status == "sent":
            result.already += 1
        elif status == "failed":
            result.failed += 1
        elif status is None and (not r.active or not subscribed(r, column)):
            continue
        elif not r.active or r.opted_out_at is not None or not subscribed(r, column) or status == "skipped":
            result.skipped += 1
        else:
            result.sent += 1
    if config.digest.operator_email:
        op_status = ((digest.summary or {}).get(OPERATOR_KEY) or {}).get("status") if digest is not None else None
        if op_status == "sent":
            result.already += 1
        elif op_status == "failed":
            result.failed += 1
        else:
            result.sent += 1
    return result


def _columns(session_factory: sessionmaker[Session], config: Config, column: str | None, week: str) -> list[str]:
    """`column`, or every digest column that has started by the end of `week`."""
    with session_factory() as session:
        columns = digest_columns(session, config)
        if column is None:
            return [c for c in columns if column_started(session, config, c, week)]
    if column not in columns:
        known = "、".join(columns) or "none"
        raise LookupError(f"no column {column!r}; the digest columns are: {known}")
    return [column]


def send_digest(
    session_factory: sessionmaker[Session],
    config: Config,
    week: str,
    now: datetime,
    *,
    column: str | None = None,
    dry_run: bool = False,
    smtp_factory: SmtpFactory | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SendResult:
    """Send ISO `week`'s digest of `column` (default: of every digest column, in order) to every
    active, not-opted-out recipient subscribed to it (and to the operator), exactly once. Calling
    it again sends nothing that was already sent. `dry_run` writes nothing and reports in `sent`
    how many copies would go out.. With `digest.review = "required"` only an
    approved issue is sent (`NotApproved` otherwise, before anything is written)."""
    iso_week_bounds(week, config.tz)  # validate the week before anything is written
    result = SendResult()
    for name in _columns(session_factory, config, column, week):
        if dry_run:
            result += _dry_run(session_factory, config, week, name)
        else:
            pending = _dry_run(session_factory, config, week, name)
            if pending.sent == 0 and pending.already:
                # Sent already, nothing left: no review gate to pass (the issue may have changed since,
                # e.g. a later correction, but what went out went out).
                result += pending
                continue
            result += _send_column(session_factory, config, week, name, now, smtp_factory, sleep)
    return result


def _send_column(
    session_factory: sessionmaker[Session],
    config: Config,
    week: str,
    column: str,
    now: datetime,
    smtp_factory: SmtpFactory | None,
    sleep: Callable[[float], None],
) -> SendResult:
    with session_factory() as session:
        data = reviewed_data(session, config, load_digest_data(session, week, config, now, column))
    domain = config.smtp.from_addr.rpartition("@")[2] or "localhost"
    digest_id = _get_or_create_digest(session_factory, data, now)
    targets = _prepare_targets(session_factory, digest_id, column, config, now)
    sender = _Sender(config.smtp, smtp_factory or (lambda: connect_smtp(config.smtp)), sleep)
    clock = _Clock(now)
    result = SendResult()
    try:
        for target in targets:
            if target.status in ("sent", "skipped", "failed"):
                result.already += target.status == "sent"
                result.skipped += target.status == "skipped"
                result.failed += target.status == "failed"
                continue
            outcome = _deliver(session_factory, config, digest_id, target, data, sender, clock, domain, sleep)
            result.sent += outcome == "sent"
            result.failed += outcome == "failed"
            result.already += outcome == "gone"
    finally:
        sender.close()
    log.info("digest %s %s: %s", column, week, result)
    return result


def digest_done(session_factory: sessionmaker[Session], config: Config, week: str) -> bool:
    """Whether every column's digest of `week` exists and nothing of it is left to send
    (sent, skipped or failed)."""
    columns = _columns(session_factory, config, None, week)
    with session_factory() as session:
        if any(_find_digest(session, c, week) is None for c in columns):
            return False
    return all(_dry_run(session_factory, config, week, c).sent == 0 for c in columns)


def send_owed_digests(
    session_factory: sessionmaker[Session],
    config: Config,
    now: datetime,
    *,
    smtp_factory: SmtpFactory | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, SendResult | None]:
    """Send every digest that is owed at `now` (`owed_weeks`: due and within the grace), oldest
    first; a week already fully sent is left alone (None in the result) without writing anything.
    With review required, an issue not approved is not sent (None): its operator gets one reminder
    and, once `digest.approve_by` passed, it is skipped for good (`feeds.review.decide`).
    `MailTransportError` stops the run: what was not sent stays pending for the next run."""
    results: dict[str, SendResult | None] = {}
    for week in owed_weeks(now, config):
        if digest_done(session_factory, config, week):
            results[week] = None
            continue
        sent: SendResult | None = None
        for column in _columns(session_factory, config, None, week):
            if config.digest.review == "required" and not _review_allows(
                session_factory, config, week, column, now, smtp_factory
            ):
                continue
            one = send_digest(session_factory, config, week, now, column=column, smtp_factory=smtp_factory, sleep=sleep)
            sent = one if sent is None else sent + one
        results[week] = sent
    return results


def _review_allows(
    session_factory: sessionmaker[Session],
    config: Config,
    week: str,
    column: str,
    now: datetime,
    smtp_factory: SmtpFactory | None,
) -> bool:
    """Whether the issue (`column`, `week`) may be sent now; reminds the operator or skips it when due."""
    with session_factory() as session:
        issue = load_issue(session, config, week, column, now, sent=False)
    action = decide(issue.review, issue.state, now=now, send_at=issue.send_at, deadline=issue.deadline)
    if action == REMIND:
        message_id = send_reminder(issue, config, now, smtp_factory)
        mark_reminded(session_factory, issue, message_id, now)
        log.warning("digest %s %s: not approved, reminder sent to %s", issue.column, week, config.digest.operator_email)
    elif action == SKIP:
        mark_skipped(session_factory, issue, now)
        log.warning("digest %s %s: not approved by %s, skipped for good", issue.column, week, issue.deadline)
    elif action == WAIT:
        log.info("digest %s %s: not sent now (%s)", issue.column, week, issue.state_name)
    return action == SEND


def send_reminder(issue: Issue, config: Config, now: datetime, smtp_factory: SmtpFactory | None = None) -> str:
    """Mail the operator that `issue` is waiting for approval (real SMTP); returns its Message-ID.
    An SMTP problem is a `MailTransportError`: the reminder is recorded only once the server
    accepted it, so the next run tries again."""
    email = config.digest.operator_email
    if not email:
        raise MailTransportError("digest.operator_email is not set: nobody to remind")
    subject, text = reminder_text(issue, config.web.base_url, now)
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["Subject"] = subject
    msg["From"] = Address(display_name=config.smtp.from_name, addr_spec=config.smtp.from_addr)
    msg["To"] = Address(display_name="运维值班", addr_spec=email)
    msg["Date"] = format_datetime(now.astimezone(config.tz))
    msg["Message-ID"] = message_id = make_msgid(domain=config.smtp.from_addr.rpartition("@")[2] or "localhost")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, cte="base64")
    try:
        smtp = (smtp_factory or (lambda: connect_smtp(config.smtp)))()
        try:
            smtp.send_message(msg, from_addr=config.smtp.from_addr, to_addrs=[email])
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    except (smtplib.SMTPException, OSError) as exc:
        raise MailTransportError(f"reminder to {email} not sent ({exc}); the next run tries again") from exc
    return message_id


def preview_digest(
    session: Session,
    config: Config,
    week: str,
    recipient_email: str | None,
    out_dir: Path,
    now: datetime,
    column: str | None = None,
) -> list[Path]:
    """Write each column's digest (or `column`'s) as `digest-<week>-<column slug>-<who>.html`
    and `.txt` files; sends nothing.

    `recipient_email` None (or the operator's address) previews the operator copy.
    """
    columns = digest_columns(session, config)
    if column is not None and column not in columns:
        raise LookupError(f"no column {column!r}; the digest columns are: {'、'.join(columns) or 'none'}")
    configured = {c.name: c.slug for c in config.columns}
    slugs = assign_slugs((c, configured.get(c)) for c in columns)
    operator = recipient_email is None or recipient_email == config.digest.operator_email
    if operator:
        who = _operator(config) or DigestRecipient(name="运维值班", email="operator@localhost")
        label = "operator"
    else:
        r = session.scalar(
            select(Recipient).options(selectinload(Recipient.unit)).where(Recipient.email == recipient_email)
        )
        if r is None:
            raise LookupError(f"no recipient with email {recipient_email!r}")
        who = DigestRecipient.from_model(r)
        label = f"recipient-{r.id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    chosen = [column] if column is not None else [c for c in columns if column_started(session, config, c, week)]
    for name in chosen:
        data = load_digest_data(session, week, config, now, name)
        rendered = render_digest(data, who, operator=operator, base_url=config.web.base_url)
        stem = f"digest-{week}-{slugs[name]}-{label}"
        html_path, text_path = out_dir / f"{stem}.html", out_dir / f"{stem}.txt"
        html_path.write_text(rendered.html, encoding="utf-8")
        text_path.write_text(rendered.text, encoding="utf-8")
        paths += [html_path, text_path]
    return paths
