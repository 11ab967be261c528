"""The command line as a user meets it (the installed `zhuanlan` console script): extract on saved pages, and one-line errors with exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support import ROOT, free_port, run_zhuanlan

FIXTURES = ROOT / "tests" / "fixtures"


def zhuanlan(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "ZHUANLAN_DATABASE_URL"}
    full_env.update(env or {})
    return run_zhuanlan(*args, cwd=cwd, env=full_env, timeout=120)


def test_extract_wechat_page_prints_fields_with_shanghai_time() -> None:
    case = FIXTURES / "wechat" / "article_type0_current"
    meta = json.loads((case / "meta.json").read_text(encoding="utf-8"))
    expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    proc = zhuanlan("extract", str(case / "page.html"), "--url", meta["url"])
    assert proc.returncode == 0, proc.stderr
    fields = json.loads(proc.stdout)
    assert fields["state"] == "ok"
    assert fields["title"] == expected["title"]
    assert fields["author"] == expected["author"]
    assert fields["published_at"] == expected["published_at"]
    assert fields["published_at"].endswith("+08:00")
    assert len(fields["body_text"]) > 200


def test_extract_gbk_site_page_has_no_mojibake() -> None:
    case = FIXTURES / "sites" / "art_gbk_no_charset"
    meta = json.loads((case / "meta.json").read_text(encoding="utf-8"))
    expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    proc = zhuanlan("extract", str(case / "page.html"), "--url", meta["url"], "--content-type", "text/html")
    assert proc.returncode == 0, proc.stderr
    fields = json.loads(proc.stdout)
    assert fields["title"] == expected["title"]
    assert fields["published_at"].startswith(expected["published_at"][:10])
    for phrase in expected["body_contains"]:
        assert phrase in fields["body_text"]
    assert "\ufffd" not in fields["body_text"]


def test_extract_missing_file_is_one_line_exit_1(tmp_path: Path) -> None:
    proc = zhuanlan("extract", str(tmp_path / "nope.html"), "--url", "https://example.org/")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("zhuanlan: cannot read")
    assert len(proc.stderr.strip().splitlines()) == 1


def _minimal_config(tmp_path: Path, db_line: str) -> Path:
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(f'{db_line}\ndata_dir = "data"\n', encoding="utf-8")
    return cfg


def test_commands_before_init_say_what_to_do(tmp_path: Path) -> None:
    cfg = _minimal_config(tmp_path, "")
    (tmp_path / "data").mkdir()
    proc = zhuanlan("--config", str(cfg), "crawl", cwd=tmp_path, env={})
    assert proc.returncode == 1
    assert "not initialised" in proc.stderr and "zhuanlan init" in proc.stderr


def test_database_that_cannot_be_opened(tmp_path: Path) -> None:
    cfg = _minimal_config(tmp_path, 'database_url = "postgresql://nobody@127.0.0.1:1/none"')
    proc = zhuanlan("--config", str(cfg), "init", cwd=tmp_path, env={})
    assert proc.returncode == 1
    assert proc.stderr.startswith("zhuanlan: cannot connect to the database")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_init_then_status(tmp_path: Path) -> None:
    cfg = _minimal_config(tmp_path, "")
    proc = zhuanlan("--config", str(cfg), "init", cwd=tmp_path, env={})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "zhuanlan.db").exists()
    status = zhuanlan("--config", str(cfg), "status", cwd=tmp_path, env={})
    assert status.returncode == 0, status.stderr
    assert "最近一次采集：还没有" in status.stdout, status.stdout
    assert "调度器未运行（从未有调度器运行过" in status.stdout and "下次运行：" not in status.stdout, status.stdout


def test_demo_refuses_a_port_in_use_before_writing_anything(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = zhuanlan("demo", "--once", "--dir", str(tmp_path / "demo"), "--sample-port", str(port), cwd=tmp_path)
    assert proc.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in proc.stderr and "--sample-port" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_one_port_for_two_of_its_servers(tmp_path: Path) -> None:
    port = str(free_port())
    proc = zhuanlan("demo", "--dir", str(tmp_path / "demo"), "--smtp-port", port, "--web-port", port, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"--smtp-port and --web-port are both {port}" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "demo").exists()
