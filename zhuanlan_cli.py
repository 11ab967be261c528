"""The `zhuanlan` command line: a thin shell over the stages.

Owns argument parsing, reading the clock, opening the database and turning failures into
one-line messages with exit codes (2: configuration, 1: anything else that stopped the
command). The work itself lives in crawler/, pipeline/, feeds/, archive/ and scheduler.py.
"""

from __future__ import annotations

import argparse
import csv
import gc
import itertools
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The database layer (SQLAlchemy, the driver, the models) is imported where a command uses it:
# `zhuanlan crawl` leaves it to its pipeline worker and starts crawling that much sooner.
from zhuanlan_config import Config, ConfigError, ConfigErrors, SourceConf, load_config, secret_from_env

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from feeds.review_store import Issue

DEFAULT_CONFIG = "zhuanlan.toml"


class UserError(RuntimeError):
    """A failure the user can fix; the message says how."""


@dataclass
class App:
    config: Config
    config_path: Path
    engine: Engine
    sessions: sessionmaker[Session]


def utcnow() -> datetime:
    return datetime.now(UTC)


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("ZHUANLAN_CONFIG") or DEFAULT_CONFIG)


def open_app(args: argparse.Namespace, *, initialise: bool = False) -> App:
    """Load the config and open the database; with `initialise`, create or upgrade it."""
    path = config_path(args)
    config = load_config(path)
    return open_database(config, path, initialise=initialise)


def open_database(config: Config, path: Path, *, initialise: bool = False) -> App:
    """The app over `config`'s database; with `initialise`, create or upgrade it."""
    from pipeline.corpus.db import make_engine, session_factory, upgrade

    if initialise:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.public_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url)
    if initialise:
        upgrade(engine, first_column=config.columns[0].name if config.columns else None)
    else:
        check_schema(engine)
    return App(config=config, config_path=path.resolve(), engine=engine, sessions=session_factory(engine))


def check_schema(engine: Engine) -> None:
    """Refuse a database this release cannot use yet; warn about one a newer release migrated.

    After an upgrade every machine runs the new code, but the database moves only with one
    `zhuanlan init`: until then a command would fail on the first table or column it lacks, far
    from the cause. A database a newer release migrated is used (migrations add to the schema), with
    a warning, so machines can be upgraded one at a time."""
    from pipeline.corpus.db import SCHEMA_REVISION, schema_gap, schema_revision

    where = engine.url.render_as_string(hide_password=True)
    found = schema_revision(engine)
    if found is None:
        raise UserError(f"the database at {where} is not initialised: run `zhuanlan init` first")
    gap = schema_gap(found)
    if gap < 0:
        raise UserError(
            f"the database at {where} is at migration {found}, and this release of zhuanlan needs "
            f"{SCHEMA_REVISION}: run `zhuanlan init` once, from any machine, to upgrade it"
        )
    if gap > 0:
        print(
            f"zhuanlan: warning: the database at {where} is at migration {found}, newer than this release "
            f"knows ({SCHEMA_REVISION}): upgrade zhuanlan on this machine",
            file=sys.stderr,
        )


def source_dict(source: SourceConf) -> dict[str, Any]:
    data = asdict(source)
    data["options"] = dict(source.options)
    return data


def selected_sources(app: App, keys: list[str] | None) -> list[SourceConf]:
    """The enabled sources named by `--source` (all enabled ones without it); an unknown key is an error."""
    return configured_sources(app.config, app.config_path, keys)


def configured_sources(config: Config, path: Path, keys: Sequence[str] | None) -> list[SourceConf]:
    """`selected_sources` from the configuration alone."""
    unknown = sorted(set(keys or ()) - {s.key for s in config.sources})
    if unknown:
        raise UserError(f"no source named {', '.join(unknown)} in {path}")
    return [s for s in config.sources if s.enabled and (not keys or s.key in keys)]


def _is_database_error(exc: BaseException) -> bool:
    """A `pipeline.corpus.db.DatabaseError` (raised only once that module is loaded: not imported to ask)."""
    db = sys.modules.get("pipeline.corpus.db")
    return db is not None and isinstance(exc, db.DatabaseError)


# --- commands ---------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    app = open_app(args, initialise=True)
    from pipeline.corpus.config_sync import sync_config
    from pipeline.corpus.db import transaction

    with transaction(app.sessions) as session:
        sync_config(session, app.config, utcnow())
    print(
        f"database ready at {app.engine.url.render_as_string(hide_password=True)}: "
        f"{len(app.config.units)} units, {len(app.config.sources)} sources, {len(app.config.recipients)} recipients"
    )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args)
    config = load_config(path)
    print(
        f"{path}: OK — {len(config.units)} units, {len(config.sources)} sources, "
        f"{len(config.recipients)} recipients, {len(config.topics)} topics"
    )
    return 0


@dataclass(frozen=True)
class CrawlPlanned:
    """What the crawl process needs of a planned run: its id, the spiders' jobs, the sources skipped."""

    run_id: int
    jobs: tuple[Any, ...]  # crawler.launch.SourceJob
    skipped: tuple[str, ...]


@dataclass
class CrawlSetup:
    """`zhuanlan crawl`'s database work (`pipeline.worker.protocol.RunSetup`), done in its pipeline
    worker: before the pages, the configuration synced and the run planned; after them, the run
    closed. The crawl process meanwhile imports Scrapy and never loads the database layer (0.3 s of
    CPU before its first request, measured). Picklable, for a worker that is spawned."""

    config: Config
    path: Path
    source_keys: tuple[str, ...]
    trigger: str
    now: datetime
    backfill: bool
    force: bool
    refresh: bool
    recheck_since: datetime | None
    run_id: int | None
    _app: App | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_app": None}  # a process opens its own database

    def app(self) -> App:
        if self._app is None:
            self._app = open_database(self.config, self.path)
        return self._app

    def prepare(self) -> tuple[int, CrawlPlanned, bool]:
        from crawler.launch import SourceJob
        from pipeline.corpus.config_sync import sync_config
        from pipeline.corpus.db import DatabaseError, transaction
        from pipeline.corpus.runs import plan_crawl
        from pipeline.worker.protocol import SetupRefused

        try:
            app = self.app()
            selected = [s for s in app.config.sources if s.key in self.source_keys]
            with transaction(app.sessions) as session:
                if self.run_id is None:
                    sync_config(session, app.config, self.now)
                plan = plan_crawl(
                    session,
                    selected,
                    trigger=self.trigger,
                    now=self.now,
                    tz=app.config.tz,
                    stale_after=timedelta(seconds=app.config.crawl.subprocess_timeout_seconds),
                    backfill=self.backfill,
                    force=self.force,
                    recheck_since=self.recheck_since,
                    run_id=self.run_id,
                )
            redis_url = app.config.distributed.redis_url
            if redis_url and self.run_id is None:
                # Frontiers that crawls killed outright left in Redis, now that their runs are marked ended.
                import redis

                from pipeline.distributed import sweep_frontiers

                client = redis.Redis.from_url(redis_url)
                try:
                    sweep_frontiers(app.sessions, client, app.config.distributed.key_prefix)
                finally:
                    client.close()
        except (UserError, DatabaseError) as exc:
            raise SetupRefused(str(exc)) from exc
        jobs = tuple(
            SourceJob(
                source=source_dict(p.source),
                known_keys=p.known_keys,
                validators=p.validators,
                backfill=p.backfill,
                refresh=self.refresh,
                recheck_urls=p.recheck_urls,
            )
            for p in plan.sources
        )
        return plan.run_id, CrawlPlanned(plan.run_id, jobs, tuple(plan.skipped)), bool(jobs)

    def finish(self, run_id: int | None, failures: tuple[str, ...]) -> dict[str, Any]:
        from pipeline.corpus.db import transaction
        from pipeline.corpus.runs import finish_crawl_run

        if run_id is None:
            raise ValueError("a crawl run is finished by its id")
        app = self.app()
        with transaction(app.sessions) as session:
            return finish_crawl_run(session, run_id, utcnow(), app.config.tz, failures=failures)


def cmd_crawl(args: argparse.Namespace) -> int:
    from crawler.launch import log_to_file
    from pipeline.worker.client import WorkerClient
    from pipeline.worker.protocol import SetupRefused
    from pipeline.worker.runner import RunnerError, RunnerSettings

    path = config_path(args)
    config = load_config(path)
    log_file = log_to_file(config.data_dir, args.log_level)
    now = utcnow()
    selected = configured_sources(config, path, args.source)
    if args.recheck:
        selected = [s for s in selected if s.kind == "wechat_album"]
    resolved = path.resolve()
    setup = CrawlSetup(
        config,
        resolved,
        tuple(s.key for s in selected),
        trigger=args.trigger,
        now=now,
        backfill=args.backfill,
        force=args.force,
        refresh=args.refresh,
        recheck_since=now - timedelta(days=args.recheck_days) if args.recheck else None,
        run_id=args.run_id,
    )
    # The pipeline worker starts first, forked while this process has loaded little: it opens the
    # database and plans the run while this process imports Scrapy and sets it up.
    runner = WorkerClient(
        RunnerSettings(config.database_url, str(resolved), None, args.log_level, str(log_file)), setup
    )
    runner.attach(lambda error: None)  # this command's own hold: the worker outlives every spider
    try:
        # Meanwhile: Scrapy, its components, the spiders and the pipeline's shell (0.7 s of imports).
        from crawler.process import crawl_settings, preload, run_jobs, spider_class
        from pipeline.worker.shell import RUNNER_SETTING

        crawl = asdict(config.crawl)
        settings = crawl_settings(
            database_url=config.database_url,
            config_path=str(resolved),
            run_id=None,  # the plan's
            crawl=crawl,
            log_level=args.log_level,
            log_file=log_file,
            redis=(config.distributed.redis_url, config.distributed.key_prefix),
            keep_frontier=args.run_id is not None,  # a crawl worker's part: resumable until the job is done
        )
        preload(settings)
        for kind in {s.kind for s in selected}:
            spider_class(kind)
        try:
            planned = runner.plan()
        except (SetupRefused, RunnerError) as exc:
            raise UserError(str(exc)) from exc
        assert isinstance(planned, CrawlPlanned)
        if planned.jobs:
            settings.set("ZHUANLAN_RUN_ID", planned.run_id, priority="cmdline")
            settings.set(RUNNER_SETTING, runner, priority="cmdline")
            run_jobs(list(planned.jobs), settings, crawl)
        failures = tuple(runner.failures)
        if args.run_id is not None:
            # A crawl worker's part of a distributed run: the worker that ends the run judges it.
            return 1 if failures else 0
        try:
            summary = runner.close_run(failures)
        except RunnerError as exc:
            # The worker died (which `failures` says) or could not close the run (which they do not): closed here.
            summary = setup.finish(planned.run_id, failures or (str(exc),))
    finally:
        runner.release()
    assert isinstance(summary, dict)
    summary.setdefault("run_id", planned.run_id)
    if planned.skipped:
        summary["skipped"] = list(planned.skipped)
    summary["log_file"] = str(log_file)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, default=str))
    else:
        print_crawl_summary(summary)
    for line in summary.get("failures", []) or []:
        print(f"zhuanlan: crawl failed: {line}", file=sys.stderr)
    return 1 if summary.get("status") == "failed" else 0


def print_crawl_summary(summary: dict[str, Any]) -> None:
    from pipeline.corpus.reasons import failed_source_line

    print(
        f"crawl run {summary.get('run_id')}: {summary.get('status')} — sources {summary.get('sources', 0)}, "
        f"new stories {summary.get('new_stories', 0)}, reposts merged {summary.get('reposts', 0)}, "
        f"problems {summary.get('problems', 0)}"
    )
    for failed in summary.get("failed_sources", []) or []:
        print(failed_source_line(failed["source"], failed["reason"]))
    for line in summary.get("skipped", []) or []:
        print(f"  - skipped {line}")
    if summary.get("failed_sources") or summary.get("failures"):
        print(f"details (tracebacks, Scrapy's log): {summary.get('log_file')}")


def cmd_feeds(args: argparse.Namespace) -> int:
    from feeds.publish import publish_feeds

    app = open_app(args)
    result = publish_feeds(app.sessions, app.config, utcnow(), force=args.force)
    print(f"feeds: {len(result.written)} written, {result.unchanged} unchanged, in {app.config.public_dir / 'feeds'}")
    return 0


def previous_week_of(week: str, n: int) -> str:
    """The ISO week `n` weeks before `week`."""
    year, number = week.split("-W")
    monday = date.fromisocalendar(int(year), int(number), 1) - timedelta(days=7 * n)
    y, w, _ = monday.isocalendar()
    return f"{y}-W{w:02d}"


def parse_week(value: str | None, now: datetime, config: Config) -> str:
    from feeds.digest import previous_week

    if value is None:
        return previous_week(now.astimezone(config.tz))
    try:
        year, week = value.split("-W")
        date.fromisocalendar(int(year), int(week), 1)
    except ValueError as exc:
        raise UserError(f"--week expects an ISO week such as 2026-W48, got {value!r}") from exc
    return f"{int(year):04d}-W{int(week):02d}"


def digest_column(config: Config, name: str | None) -> str:
    """The column an issue command is about: `name` (configured), else the first configured one."""
    from feeds.review import default_column

    return default_column(config) if name is None else report_column(config, name)


def load_issue_now(app: App, week: str, column: str, now: datetime) -> Issue:
    from feeds.mail import digest_done
    from feeds.review_store import load_issue

    sent = digest_done(app.sessions, app.config, week)
    with app.sessions() as session:
        return load_issue(session, app.config, week, column, now, sent=sent)


def approve_issue(app: App, week: str, column: str, by: str, now: datetime) -> Issue:
    """`zhuanlan digest approve` (and the demo): approve the issue as it stands now, or UserError
    with the reason (unattributed stories still undecided, already sent, past the deadline)."""
    from feeds.review_store import ReviewError, approve

    issue = load_issue_now(app, week, column, now)
    try:
        approve(app.sessions, issue, by=by, now=now)
    except ReviewError as exc:
        raise UserError(f"digest {column} {week}: approval refused: {exc}") from exc
    print(f"digest {column} {week}: approved by {by} at {now.astimezone(app.config.tz):%Y-%m-%d %H:%M}")
    return issue


def print_issue(issue: Issue, tz: ZoneInfo) -> None:
    review = issue.review
    approved = ""
    if review is not None and review.approved_at is not None:
        approved = f"; approved by {review.approved_by} {review.approved_at.astimezone(tz):%m-%d %H:%M}"
    reminded = ""
    if review is not None and review.reminder_sent_at is not None:
        reminded = f"; reminder sent {review.reminder_sent_at.astimezone(tz):%m-%d %H:%M}"
    print(
        f"{issue.week}  {issue.column}  {issue.state}（{issue.state_name}）{approved}{reminded}; "
        f"send {issue.send_at:%m-%d %H:%M}, approve by {issue.deadline:%m-%d %H:%M}; "
        f"{issue.data.total_week} stories, {len(issue.unresolved)} unattributed to decide"
    )
    for a in issue.unresolved:
        print(f"    unattributed: {a.title}  ({a.guid})")


def cmd_digest(args: argparse.Namespace) -> int:
    from feeds.mail import preview_digest, send_digest
    from feeds.review_store import NotApproved

    app = open_app(args)
    now = utcnow()
    week = parse_week(args.week, now, app.config)
    if args.action in ("approve", "status"):
        column = digest_column(app.config, args.column)
        if args.action == "approve":
            by = args.by or f"{os.environ.get('USER') or 'operator'} (命令行)"
            approve_issue(app, week, column, by, now)
            if app.config.digest.review != "required":
                print('note: digest.review is "off": issues are sent without approval')
            return 0
        weeks = [week] if args.week else [previous_week_of(week, n) for n in (3, 2, 1, 0)]
        print(f'digest.review = "{app.config.digest.review}"')
        for w in weeks:
            print_issue(load_issue_now(app, w, column, now), app.config.tz)
        return 0
    try:
        if args.action == "preview":
            with app.sessions() as session:
                files = preview_digest(session, app.config, week, args.recipient, Path(args.out), now, args.column)
            for f in files:
                print(f)
            return 0
        result = send_digest(app.sessions, app.config, week, now, column=args.column, dry_run=args.dry_run)
    except NotApproved as exc:
        raise UserError(f"digest {week} not sent: {exc} (zhuanlan digest approve --week {week})") from exc
    except (LookupError, ValueError) as exc:  # an unknown recipient or column, a week before the start
        raise UserError(str(exc)) from exc
    print(
        f"digest {week}{' ' + args.column if args.column else ''}: sent {result.sent}, failed {result.failed}, skipped {result.skipped}, "
        f"already sent {result.already}" + (" (dry run: nothing sent)" if args.dry_run else "")
    )
    return 1 if result.failed else 0


def cmd_retag(args: argparse.Namespace) -> int:
    from pipeline.corpus.retag import retag_corpus
    from pipeline.tagging.rules import Vocabulary

    app = open_app(args)

    def progress(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        print(f"\rretag [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)

    result = retag_corpus(
        app.sessions, Vocabulary.from_config(app.config), batch_size=args.batch_size, progress=progress, now=utcnow()
    )
    print(file=sys.stderr)
    print(f"retag: {result.articles} articles in {result.batches} batches, {result.changed} changed")
    return 0


def cmd_correct(args: argparse.Namespace) -> int:
    from pipeline.corpus.corrections import Change, CorrectionError, correct_story, parse_author

    if args.unit is None and not args.unattributed and not args.author and args.in_column is None:
        raise UserError("nothing to correct: give --unit, --unattributed, --author or --in-column/--not-in-column")
    if args.unit is not None and args.unattributed:
        raise UserError("--unit and --unattributed contradict each other: give one")
    app = open_app(args)
    try:
        change = Change(
            unit=args.unit,
            unattributed=args.unattributed,
            authors=tuple(parse_author(a) for a in args.author) if args.author else None,
            in_column=args.in_column,
            column=args.column,
        )
        actor = args.by or f"{os.environ.get('USER') or 'operator'} (命令行)"
        from pipeline.corpus.db import transaction

        with transaction(app.sessions) as session:
            rows = correct_story(session, args.guid, change, actor=actor, now=utcnow(), note=args.note)
    except CorrectionError as exc:
        raise UserError(str(exc)) from exc
    if not rows:
        print(f"{args.guid}: nothing changed (the story already says so)")
        return 0
    for row in rows:
        print(f"{args.guid}: {row.field} {_json(row.old_value)} → {_json(row.new_value)} (by {row.actor})")
    print("feeds show it at their next rebuild (zhuanlan feeds); retag and re-crawls keep it")
    return 0


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _filters(args: argparse.Namespace) -> Any:
    from archive.search import Filters

    return Filters(
        unit=args.unit,
        author=args.author,
        topic=args.topic,
        column=args.column,
        source_kind=args.source_kind,
        date_from=_date_arg(args.date_from, "--from"),
        date_to=_date_arg(args.date_to, "--to"),
        state=args.state,
    )


def _date_arg(value: str | None, flag: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise UserError(f"{flag} expects a date YYYY-MM-DD, got {value!r}") from exc


def cmd_search(args: argparse.Namespace) -> int:
    from archive.search import search
    from archive.search_syntax import QueryError

    app = open_app(args)
    try:
        with app.sessions() as session:
            result = search(
                session,
                args.query,
                _filters(args),
                page=args.page,
                per_page=args.limit,
                sort=args.sort,
                tz=app.config.tz,
            )
    except QueryError as exc:
        raise UserError(f"cannot search for that: {exc}") from exc
    base = app.config.web.base_url
    rows: list[dict[str, Any]] = [
        {
            "guid": h.guid,
            "title": h.title,
            "unit": h.unit,
            "author": h.author,
            "published_at": h.published_at.astimezone(app.config.tz).isoformat() if h.published_at else None,
            "score": round(h.score, 4) if h.score is not None else None,
            "url": h.url,
            "archive_url": f"{base}/story/{h.guid}",
            "snippet": h.snippet.text,
            "highlights": [list(span) for span in h.snippet.spans],
        }
        for h in result.hits
    ]
    if args.format == "json":
        # "estimated" only when the total is an estimate: the exact answer keeps its shape.
        out: dict[str, Any] = {"total": result.total, **({"estimated": True} if result.estimated else {}), "hits": rows}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    elif args.format == "csv":
        fields = ["guid", "title", "unit", "author", "published_at", "score", "url", "archive_url", "snippet"]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(f"about {result.total} results (newest first)" if result.estimated else f"{result.total} results")
        for r in rows:
            day = (r["published_at"] or "")[:10]
            print(f"{day:10}  {(r['unit'] or '-')[:12]:12}  {(r['author'] or '-')[:6]:6}  {r['title']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from archive.export import Selection, export
    from archive.search_syntax import QueryError

    app = open_app(args)
    out = Path(args.out or f"zhuanlan-export.{ {'csv': 'csv', 'jsonl': 'jsonl', 'warc': 'warc.gz'}[args.format] }")
    selection = Selection(filters=_filters(args), query=args.query, order=args.sort)
    try:
        with app.sessions() as session:
            result = export(
                session,
                args.format,
                selection,
                out,
                tz=app.config.tz,
                user_agent=app.config.crawl.user_agent,
                now=utcnow(),
            )
    except QueryError as exc:
        raise UserError(f"cannot export that search: {exc}") from exc
    print(f"exported {result.count} stories to {', '.join(str(f) for f in result.files)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from feeds.report import load_report
    from feeds.report_files import render

    date_from = _date_arg(args.date_from, "--from")
    date_to = _date_arg(args.date_to, "--to")
    assert date_from is not None and date_to is not None  # required options
    if date_to < date_from:
        raise UserError(f"--to {date_to} is before --from {date_from}: give the period's first day, then its last")
    app = open_app(args)
    column = report_column(app.config, args.column)
    with app.sessions() as session:
        report = load_report(session, app.config, column, date_from, date_to)
    out = Path(args.out)
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_bytes(render(report, args.format))
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"cannot write {out}: {exc.strerror}") from exc
    decided = report.no_unit_count
    print(
        f"report {column} {date_from}..{date_to}: {report.total} articles of "
        f"{sum(1 for u in report.units if u.count)} units, {len(report.unattributed) - decided} unattributed, "
        f"{decided} decided to belong to no unit; {args.format} written to {out}"
    )
    return 0


def report_column(config: Config, name: str | None) -> str:
    """The column a report is about: `name` when it is configured, else the first configured column."""
    configured = [c.name for c in config.columns]
    if not configured:
        raise UserError("no column is configured: add a [[columns]] table to the config")
    if name is None:
        return configured[0]
    if name not in configured:
        raise UserError(f"no column named {name!r} is configured; configured: {', '.join(configured)}")
    return name


def cmd_extract(args: argparse.Namespace) -> int:
    from crawler.parsing.extract import extract_page

    path = Path(args.file)
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    fields = extract_page(body, args.url, content_type=args.content_type)
    if args.source and fields.get("state") == "ok":
        from pipeline.tag import extract_attribution
        from pipeline.tagging.rules import Vocabulary

        config = load_config(config_path(args))
        source = config.source(args.source)  # an unknown key is a configuration error (exit 2)
        fields.update(extract_attribution(fields, source, Vocabulary.from_config(config), utcnow()))
    print(json.dumps(fields, ensure_ascii=False, indent=2, default=str))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from archive.web import create_app, serve

    app = open_app(args)
    web = create_app(app.config, app.sessions, now=utcnow)
    host = args.host or app.config.web.host
    port = args.port or app.config.web.port
    if secret_from_env("ZHUANLAN_SECRET_KEY") is None:
        print(
            "zhuanlan serve: warning: ZHUANLAN_SECRET_KEY is not set, so this process signs with a key of "
            "its own: operator logins and open forms (login, unsubscribe, review) end when it restarts, "
            "and fail on any other web machine behind the same proxy. Set the same key on every web machine.",
            file=sys.stderr,
            flush=True,
        )
    redis_url = app.config.distributed.redis_url
    if redis_url:
        from archive.login_limits import redis_problem, shown_url

        problem = redis_problem(redis_url)
        if problem is not None:
            print(
                f"zhuanlan serve: warning: Redis at {shown_url(redis_url)} does not answer ({problem}): until it "
                "does, this process counts login attempts on its own, so each web app allows the full rate.",
                file=sys.stderr,
                flush=True,
            )
    if host in {"127.0.0.1", "localhost"}:
        ensure_port_free(port, "--port")
    print(f"serving on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    # SIGTERM (systemd, docker stop, kill) stops it as Ctrl-C does: waitress closes its socket on
    # KeyboardInterrupt and returns, instead of the process dying mid-response with status -15.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve(web, host, port, app.config.web)
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror}; pass --port") from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("zhuanlan serve: stopped", flush=True)
    return 0


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def cmd_schedule(args: argparse.Namespace) -> int:
    import scheduler

    open_app(args)
    return scheduler.main([str(config_path(args))])


def _source_queue(app: App) -> Any:
    from crawler.queue import SourceQueue

    dist = app.config.distributed
    if not dist.redis_url:
        raise UserError(f"no [distributed] redis_url in {app.config_path}: the distributed crawl is off")
    return SourceQueue.connect(dist.redis_url, dist.key_prefix, dist.lease_seconds)


def cmd_enqueue(args: argparse.Namespace) -> int:
    from pipeline.distributed import enqueue_crawl

    app = open_app(args)
    selected = selected_sources(app, args.source)
    run_id, jobs, skipped = enqueue_crawl(
        app.sessions,
        _source_queue(app),
        app.config,
        selected,
        trigger=args.trigger,
        now=utcnow(),
        backfill=args.backfill,
        force=args.force,
    )
    print(f"crawl run {run_id}: {len(jobs)} source(s) queued for the crawl workers")
    for line in skipped:
        print(f"  - skipped {line}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import socket
    import threading

    import scheduler
    from pipeline.distributed import CrawlWorker
    from pipeline.signals import stop_on_signals

    app = open_app(args)
    stop = threading.Event()
    name = args.name or f"{socket.gethostname()}:{os.getpid()}"
    worker = CrawlWorker(
        name=name,
        queue=_source_queue(app),
        sessions=app.sessions,
        config=app.config,
        config_path=str(app.config_path),
        spawn=scheduler.spawn_child,
        stop_child=scheduler.stop_child,
        poll_seconds=args.poll_seconds,
        sources_per_crawl=args.sources_per_crawl,
    )
    print(f"crawl worker {name} waiting for sources", flush=True)
    with stop_on_signals(stop):
        crawled = worker.run(stop, exit_when_idle=args.exit_when_idle)
    print(f"crawl worker {name}: {crawled} source(s) crawled")
    return 0


def cmd_run_once(args: argparse.Namespace) -> int:
    import scheduler

    app = open_app(args)
    return scheduler.run_once(args.job, app.config, app.config_path, utcnow())


def cmd_status(args: argparse.Namespace) -> int:
    import scheduler

    app = open_app(args)
    print(scheduler.status_report(app.config, app.engine, app.sessions, utcnow()))
    return 0


class _Outbox:
    """aiosmtpd handler for the demo's local mail server: every message lands in an .eml file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{self.count:04d}-{envelope.rcpt_tos[0].replace('@', '_at_')}.eml"
        (self.directory / name).write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def _start_outbox(directory: Path, port: int) -> Any:
    from aiosmtpd.controller import Controller

    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(_Outbox(directory), hostname="127.0.0.1", port=port)
    try:
        controller.start()
    except (OSError, RuntimeError) as exc:
        raise UserError(f"cannot start the demo mail server on 127.0.0.1:{port} ({exc}): pass --smtp-port") from exc
    return controller


def ensure_port_free(port: int, flag: str) -> None:
    """Fail before anything is written when a port the command needs is taken."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves bind: connections of a previous run in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UserError(
                f"port {port} on 127.0.0.1 is in use ({exc.strerror}): stop what uses it or pass {flag}"
            ) from exc


def any_free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (what the system hands out for port 0)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


DEMO_STATE = "demo-state.json"
DEFAULT_SAMPLE_PORT = 8750


@dataclass(frozen=True)
class DemoState:
    """What makes a demo directory's sample sources the same sources on every run: the stories'
    identity is their address (port included) and their dates follow the anchor day."""

    sample_port: int
    anchor: date


def demo_state(demo_dir: Path, requested_port: int | None, today: date) -> tuple[DemoState, bool]:
    """The directory's demo state (and whether it is new): kept from its first run; a first run
    takes `requested_port` (default 8750; 0: any free port) and today as the anchor."""
    path = demo_dir / DEMO_STATE
    if not path.is_file():
        if requested_port == 0:
            return DemoState(any_free_port(), today), True
        return DemoState(requested_port or DEFAULT_SAMPLE_PORT, today), True
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        state = DemoState(int(data["sample_port"]), date.fromisoformat(data["anchor"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read {path} ({exc}): remove the directory {demo_dir} to start a new demo") from exc
    if requested_port not in (None, 0, state.sample_port):
        raise UserError(
            f"the demo in {demo_dir} serves its sample sources on port {state.sample_port}: their addresses "
            f"are part of every stored story's identity, so port {requested_port} would store them all again. "
            f"Run without --sample-port to reuse {state.sample_port}, or pass another --dir for a new demo"
        )
    return state, False


def command_hint(config: Path) -> str:
    """How to run a command against `config` from here, as the operator started this one."""
    program = Path(sys.argv[0])
    shown = _relative(program) if program.name == "zhuanlan" else f"{sys.executable} -m zhuanlan_cli"
    return f"{shown} --config {_relative(config)}"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the bundled sample sources: one full production cycle, then web app + scheduler."""
    from crawler.samples.catalog import anchor_at

    demo_dir = Path(args.dir).resolve()
    state, new = demo_state(demo_dir, args.sample_port, anchor_at(utcnow()))
    ports = [("--sample-port", state.sample_port), ("--smtp-port", args.smtp_port)]
    if not args.once:
        ports.append(("--web-port", args.web_port))
    for (flag, port), (other, taken) in itertools.combinations(ports, 2):
        if port == taken:
            raise UserError(f"{flag} and {other} are both {port}: each of the demo's servers needs a port of its own")
    for flag, port in ports:
        if flag == "--sample-port" and not new:
            flag = f"--dir (the demo in {demo_dir} keeps its sample sources on port {port})"
        ensure_port_free(port, flag)
    try:
        return _run_demo(args, demo_dir, state)
    except KeyboardInterrupt:
        print(
            "zhuanlan demo: stopped by Ctrl-C. What was stored is kept; run it again to finish "
            "(nothing is stored or sent twice).",
            file=sys.stderr,
        )
        return 130


def _run_demo(args: argparse.Namespace, demo_dir: Path, state: DemoState) -> int:
    import subprocess

    from crawler.samples.server import SampleSources, sample_config_toml
    from feeds.digest import previous_week
    from feeds.mail import send_digest
    from feeds.publish import publish_feeds

    demo_dir.mkdir(parents=True, exist_ok=True)
    samples = SampleSources(port=state.sample_port, anchor=state.anchor)
    try:
        base_url = samples.start()
    except OSError as exc:
        raise UserError(
            f"cannot serve the sample sources on 127.0.0.1:{state.sample_port} ({exc}): pass --sample-port"
        ) from exc
    state_file = demo_dir / DEMO_STATE
    if not state_file.is_file():
        state_file.write_text(
            json.dumps({"sample_port": state.sample_port, "anchor": state.anchor.isoformat()}) + "\n", encoding="utf-8"
        )
    outbox_dir = demo_dir / "outbox"
    smtp = None
    try:
        smtp = _start_outbox(outbox_dir, args.smtp_port)
        cfg_path = demo_dir / "zhuanlan.toml"
        cfg_path.write_text(
            sample_config_toml(
                base_url, smtp_port=args.smtp_port, web_port=args.web_port, anchor=state.anchor, review="required"
            ),
            encoding="utf-8",
        )
        args.config = str(cfg_path)
        print(f"sample sources on {base_url}; demo files in {demo_dir}", flush=True)
        cmd_init(args)
        app = open_app(args)
        # The crawl runs exactly as in production: a fresh `zhuanlan crawl` process.
        proc = subprocess.run(
            [sys.executable, "-m", "zhuanlan_cli", "--config", str(cfg_path), "crawl", "--trigger", "demo", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode not in (0, 1) or not proc.stdout.strip():
            sys.stderr.write(proc.stderr[-4000:])
            raise UserError(f"the crawl failed (exit {proc.returncode}); see the messages above")
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        now = utcnow()
        feeds = publish_feeds(app.sessions, app.config, now)
        week = previous_week(now.astimezone(app.config.tz))
        review_lines = demo_review(app, week, now)
        sent = send_digest(app.sessions, app.config, week, now)
        hint = command_hint(cfg_path)
        print()
        print("== zhuanlan demo: one full cycle done")
        print(f"  sources crawled : {summary.get('sources', 0)} ({summary.get('ok', 0)} ok)")
        print(f"  new stories     : {summary.get('new_stories', 0)}")
        print(f"  reposts merged  : {summary.get('reposts', 0)}")
        print(f"  problems        : {summary.get('problems', 0)}")
        print(f"  feeds written   : {len(feeds.written)} ({feeds.unchanged} unchanged)")
        for line in review_lines:
            print(f"  {line}")
        print(f"  digest {week}: sent {sent.sent}, already sent {sent.already}, failed {sent.failed}")
        print(f"  database        : {app.config.database_url}")
        print(f"  feeds           : {app.config.public_dir / 'feeds'}")
        print(f"  mail (.eml)     : {outbox_dir}")
        print(f"  crawl log       : {summary.get('log_file', '')}")
        for failed in summary.get("failed_sources", []) or []:
            print(f"  ! 来源 {failed['source']}：{failed['reason']}")
        if args.once:
            print(f"\nCommands against this demo: {hint} status (search, export, report, …)", flush=True)
            return 0
        return _serve_and_schedule(app, args.web_port, cfg_path, hint)
    finally:
        if smtp is not None:
            smtp.stop()
        samples.stop()


def _serve_and_schedule(app: App, web_port: int, cfg_path: Path, hint: str) -> int:
    """The demo's second half: the web app in a thread and the scheduler until Ctrl-C or SIGTERM.

    From here on a signal only sets `stop` (pipeline.signals), never raises in the middle of the
    scheduler's start: whenever it comes, the scheduler finishes starting and shuts down cleanly.
    """
    import threading

    import scheduler
    from archive.web import bind, create_app
    from pipeline.signals import stop_on_signals

    stop = threading.Event()
    with stop_on_signals(stop):
        web = create_app(app.config, app.sessions, now=utcnow)
        try:  # bound before saying where to open it: a port taken since the start is reported, not hidden
            server = bind(web, "127.0.0.1", web_port, app.config.web)
        except OSError as exc:
            raise UserError(
                f"cannot serve the web app on 127.0.0.1:{web_port} ({exc.strerror}): pass --web-port"
            ) from exc
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        print(f"\nOpen http://127.0.0.1:{web_port}/ — the scheduler keeps running; Ctrl-C to stop.")
        print(f"Commands against this demo (from another terminal): {hint} status", flush=True)
        code = scheduler.run(str(cfg_path), stop=stop)
    if stop.is_set():
        print("zhuanlan demo: stopped. What was stored is kept; run it again to go on.", file=sys.stderr)
    return code


DEMO_OPERATOR = "demo"
DEMO_OWN_NOTE = "工委自身发布的图文分享，不是单位来稿：不计入任何单位"


def demo_review(app: App, week: str, now: datetime) -> list[str]:
    """The demo's operator reviewing the issue: the stories nobody could attribute (the 工委's own
    image and text shares) are decided as belonging to no unit through the correction flow (as
    `zhuanlan correct GUID --unattributed` would), then the issue is approved on the command-line
    path (`approve_issue`, as `zhuanlan digest approve`). Returns what it did, for the summary."""
    from sqlalchemy import select

    from feeds.review import SENT
    from pipeline.corpus.corrections import Change, awaiting_unit, correct_story
    from pipeline.corpus.db import transaction
    from pipeline.corpus.models import Article

    column = digest_column(app.config, None)
    issue = load_issue_now(app, week, column, now)
    if issue.state == SENT:  # a second run of the demo: nothing to review, nothing sent twice
        return [f"{week} 周报已发送过，不再审核"]
    in_issue = {a.guid for a in issue.unresolved}
    with app.sessions() as session:
        undecided = session.execute(
            select(Article.guid, Article.title).where(awaiting_unit()).order_by(Article.id)
        ).all()
    done = []
    for guid, title in undecided:
        with transaction(app.sessions) as session:
            correct_story(session, guid, Change(unattributed=True), actor=DEMO_OPERATOR, now=now, note=DEMO_OWN_NOTE)
        where = f"本期 {week}" if guid in in_issue else "往期"
        done.append(f"归属更正（{where}）：「{title}」→ 不属于任何单位（{DEMO_OWN_NOTE}；操作员 {DEMO_OPERATOR}）")
    approve_issue(app, week, column, DEMO_OPERATOR, now)
    return [*done, f"已审核通过 {week} 周报（操作员 {DEMO_OPERATOR}，与 zhuanlan digest approve 同一路径）"]


def cmd_eval(args: argparse.Namespace) -> int:
    from crawler.evaluation.run import main as eval_main
    from pipeline.tagging.evaluate import main as attribution_main

    status = eval_main(Path(args.corpus), strict=args.strict)
    print("\n== Attribution on the byline fixtures (the project's own pages)")
    missed = attribution_main(Path(args.fixtures))
    return 1 if status or (args.strict and missed) else 0


# --- parser -------------------------------------------------------------------------


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unit", help="unit id or name")
    p.add_argument("--author")
    p.add_argument("--topic")
    p.add_argument("--column")
    p.add_argument("--source-kind", choices=["wechat_album", "site_column"])
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD")
    p.add_argument("--state", choices=["live", "deleted", "edited", "any"], default="any")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhuanlan", description="Column aggregation: crawl, deduplicate, tag, store, publish."
    )
    parser.add_argument("--config", "-c", help=f"config file (default: $ZHUANLAN_CONFIG or ./{DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "create or upgrade the database and load units, sources and recipients from the config")
    add("check-config", cmd_check_config, "validate the config file and exit")

    p = add("crawl", cmd_crawl, "crawl the configured sources once (this process runs Scrapy)")
    p.add_argument("--source", action="append", metavar="KEY", help="only this source (repeatable)")
    p.add_argument(
        "--backfill", action="store_true", help="page to the end of every list instead of stopping at known articles"
    )
    p.add_argument("--refresh", action="store_true", help="re-fetch stored articles too")
    p.add_argument(
        "--recheck", action="store_true", help="re-fetch recent WeChat articles to detect deletions and edits"
    )
    p.add_argument("--recheck-days", type=int, default=14)
    p.add_argument("--force", action="store_true", help="crawl paused sources too")
    p.add_argument("--trigger", default="manual", help=argparse.SUPPRESS)
    p.add_argument("--run-id", type=int, default=None, help=argparse.SUPPRESS)  # a crawl worker's part of a run
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    p = add("feeds", cmd_feeds, "rebuild the feeds whose content changed")
    p.add_argument("--force", action="store_true", help="rewrite every feed")

    p = add("digest", cmd_digest, "preview, approve, show the status of, or send the weekly digest")
    p.add_argument("action", choices=["preview", "approve", "status", "send"])
    p.add_argument("--week", help="ISO week, e.g. 2026-W48 (default: last week; status: the last four)")
    p.add_argument(
        "--column",
        metavar="NAME",
        help="one column; preview/send default: every column's digest, approve/status: the first configured column",
    )
    p.add_argument("--by", help="approve: who approves (default: $USER (命令行))")
    p.add_argument("--recipient", metavar="EMAIL", help="preview: only this recipient")
    p.add_argument("--out", default="digest-preview", help="preview: output directory")
    p.add_argument("--dry-run", action="store_true", help="send: render and report, send nothing")

    p = add("correct", cmd_correct, "correct a story's unit, authors or column membership (recorded, kept by retag)")
    p.add_argument("guid", help="the story's id (in its web page address /story/<id>, and in exports)")
    p.add_argument("--unit", help="the configured unit the story belongs to")
    p.add_argument("--unattributed", action="store_true", help="the story belongs to no configured unit")
    p.add_argument(
        "--author",
        action="append",
        metavar="NAME[:POSITIONS]",
        help="an author, in order; repeat for several (e.g. --author '叶其炎:党组书记、局长')",
    )
    column = p.add_mutually_exclusive_group()
    column.add_argument("--in-column", dest="in_column", action="store_const", const=True, default=None)
    column.add_argument("--not-in-column", dest="in_column", action="store_const", const=False)
    p.add_argument("--column", help="with --in-column: which column (default: the story's candidate)")
    p.add_argument("--note", help="why (kept with the correction)")
    p.add_argument("--by", help="who makes the correction (default: $USER)")

    p = add("retag", cmd_retag, "recompute tags for the whole corpus (safe to interrupt and rerun)")
    p.add_argument("--batch-size", type=int, default=200)

    p = add("search", cmd_search, "full-text search of the stored corpus")
    p.add_argument("query", nargs="?", default="")
    _add_filters(p)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument(
        "--sort", choices=["relevance", "date"], default="relevance", help="best match first, or newest first"
    )
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--page", type=int, default=1)

    p = add("export", cmd_export, "export stories (CSV, JSON Lines, or WARC with the original responses)")
    p.add_argument("--format", choices=["csv", "jsonl", "warc"], required=True)
    p.add_argument("--out", help="output file")
    p.add_argument("--query", default="", help="only the hits of this search (the search command's syntax)")
    p.add_argument(
        "--sort",
        choices=["oldest", "date", "relevance"],
        default="oldest",
        help="oldest first (default), newest first, or best match first",
    )
    _add_filters(p)

    p = add("report", cmd_report, "the column's 统计表 (xlsx), 汇编 (docx) or 明细 (csv) for a period")
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", required=True, help="first day (included)")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", required=True, help="last day (included)")
    p.add_argument("--format", choices=["xlsx", "docx", "csv"], required=True)
    p.add_argument("--column", help="a configured column (default: the first configured column)")
    p.add_argument("--out", required=True, metavar="FILE")

    p = add("extract", cmd_extract, "print the fields parsed from a saved page as JSON")
    p.add_argument("file")
    p.add_argument("--url", required=True, help="the URL the page was saved from")
    p.add_argument("--content-type", help="the Content-Type header it was served with, if known")
    p.add_argument(
        "--source", metavar="KEY", help="also print its attribution as the pipeline computes it for this source"
    )

    p = add("serve", cmd_serve, "run the web app (search, stories, feeds, health)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)

    p = add("enqueue", cmd_enqueue, "queue the due sources for the crawl workers ([distributed] redis_url)")
    p.add_argument("--source", action="append", metavar="KEY", help="only this source (repeatable)")
    p.add_argument("--backfill", action="store_true", help="page to the end of every list")
    p.add_argument("--force", action="store_true", help="crawl paused sources too")
    p.add_argument("--trigger", default="manual", help=argparse.SUPPRESS)

    p = add("worker", cmd_worker, "run a crawl worker: crawl sources queued in Redis until stopped")
    p.add_argument("--name", help="this worker's name in run records (default host:pid)")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="how often an idle worker looks for work")
    p.add_argument(
        "--sources-per-crawl", type=int, default=4, help="sources claimed at once and crawled by one crawl process"
    )
    p.add_argument("--exit-when-idle", action="store_true", help="exit when no source is queued or being crawled")

    add("schedule", cmd_schedule, "run the scheduler (crawl, feeds, digest, recheck, maintenance) until stopped")
    p = add("run-once", cmd_run_once, "run one scheduled job now and exit")
    p.add_argument("job", choices=["crawl", "feeds", "digest", "recheck", "maintenance"])
    add("status", cmd_status, "scheduler alive?, next runs, last crawl, source health, failed logins (in Chinese)")

    p = add("demo", cmd_demo, "the whole pipeline against the bundled sample sources, then web app + scheduler")
    p.add_argument("--dir", default="demo", help="where the demo keeps its config, database, feeds and mail")
    p.add_argument("--once", action="store_true", help="run one cycle, print the summary and exit")
    p.add_argument(
        "--sample-port",
        type=int,
        help=f"a new demo's sample sources (default {DEFAULT_SAMPLE_PORT}; 0: any free port); a demo directory "
        "keeps its port",
    )
    p.add_argument("--smtp-port", type=int, default=8025)
    p.add_argument("--web-port", type=int, default=8080)

    p = add("eval", cmd_eval, "measure extraction on the shared corpus of real pages, and attribution")
    p.add_argument("--corpus", default="../shared/corpus")
    p.add_argument(
        "--fixtures",
        default=str(Path(__file__).resolve().parent / "tests" / "fixtures" / "attribution"),
        help="the byline fixture set for the attribution section",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for error in exc.errors if isinstance(exc, ConfigErrors) else (exc,):
            print(f"zhuanlan: configuration error: {error}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not isinstance(exc, UserError) and not _is_database_error(exc):
            raise
        print(f"zhuanlan: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("zhuanlan: interrupted", file=sys.stderr)
        return 130


def entry() -> int:
    """The `zhuanlan` command (and `python -m zhuanlan_cli`): `main`, then a quick exit.

    What the command left behind is collected now (closing its database connections and files);
    what is still reachable is then frozen out of the collector, so the interpreter's teardown
    does not walk it again: after a crawl that walk alone took 0.3 s of every scheduled run.
    """
    status = main()
    gc.collect()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(entry())
