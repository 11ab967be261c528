"""A release and the database it finds: every command but `init` checks the migration first.

On N machines (docs/scaling.md) the code is upgraded on each machine and the database once, by one
`zhuanlan init`. A command whose code needs a newer schema than the database has says so and what
to run, instead of failing later on the first table it lacks; a database that a newer release
already migrated is used with a warning, so that machines can be upgraded one at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from pipeline.corpus.db import SCHEMA_REVISION, alembic_config, make_engine, schema_gap, schema_revision
from tests.support import run_cli


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text('data_dir = "data"\npublic_dir = "public"\n', encoding="utf-8")
    return cfg


def test_the_release_needs_the_newest_migration(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert ScriptDirectory.from_config(alembic_config(engine)).get_current_head() == SCHEMA_REVISION
    finally:
        engine.dispose()


def test_schema_gap() -> None:
    assert schema_gap(None) < 0
    assert schema_gap("0014", "0015") < 0 and schema_gap("0009", "0015") < 0
    assert schema_gap("0015", "0015") == 0
    assert schema_gap("0016", "0015") > 0 and schema_gap("0100", "0015") > 0
    assert schema_gap("abc123", "0015") > 0  # a revision this release does not know: a newer one


def test_a_command_refuses_a_database_an_older_release_left_until_init_upgrades_it(tmp_path: Path, db_url: str) -> None:
    cfg = _config(tmp_path)
    missing = run_cli(cfg, db_url, "status")
    assert missing.returncode != 0 and "not initialised: run `zhuanlan init` first" in missing.stderr

    engine = make_engine(db_url)
    try:
        previous = f"{int(SCHEMA_REVISION) - 1:04d}"
        command.upgrade(alembic_config(engine), previous)  # what the release before this one left
        assert schema_revision(engine) == previous
        for args in (("status",), ("feeds",), ("serve", "--port", "1")):
            refused = run_cli(cfg, db_url, *args)
            assert refused.returncode != 0, args
            assert f"is at migration {previous}, and this release of zhuanlan needs {SCHEMA_REVISION}" in refused.stderr
            assert "run `zhuanlan init` once, from any machine" in refused.stderr
            assert "Traceback" not in refused.stderr
        assert schema_revision(engine) == previous  # nothing but init migrates

        upgraded = run_cli(cfg, db_url, "init")
        assert upgraded.returncode == 0, upgraded.stderr
        assert schema_revision(engine) == SCHEMA_REVISION
        ok = run_cli(cfg, db_url, "status")
        assert ok.returncode == 0, ok.stderr
        assert "warning" not in ok.stderr
    finally:
        engine.dispose()


@pytest.mark.parametrize("newer", ["0999", "f00dcafe"])
def test_a_database_a_newer_release_migrated_is_used_with_a_warning(tmp_path: Path, db_url: str, newer: str) -> None:
    cfg = _config(tmp_path)
    assert run_cli(cfg, db_url, "init").returncode == 0
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": newer})
        status = run_cli(cfg, db_url, "status")
        assert status.returncode == 0, status.stderr
        assert f"is at migration {newer}, newer than this release knows ({SCHEMA_REVISION})" in status.stderr
        assert "upgrade zhuanlan on this machine" in status.stderr
    finally:
        engine.dispose()
