"""Config loading: every key of the example validates; bad input names the key path and exits 2."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from zhuanlan_config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "zhuanlan.example.toml"


def example() -> dict[str, object]:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def test_example_config_loads_every_section(tmp_path: Path) -> None:
    config = parse_config(example(), base_dir=tmp_path)
    assert config.database_url == f"sqlite:///{tmp_path / 'data/zhuanlan.db'}"
    assert [u.name for u in config.units][:2] == ["中共张掖市直机关工委", "张掖市科学技术局"]
    assert config.units[1].aliases == ("市科学技术局", "科技局", "市科技局")
    assert config.recipients[0].email == "kjj-dangzu@example.org"
    wechat = config.source("wechat-jiguan")
    assert wechat.kind == "wechat_album" and wechat.options["delay_seconds"] == 6
    site = config.source("kjj-site")
    assert site.options["list_type"] == "hanweb_datastore"
    assert config.topics[0].keywords["科技创新"] == 2.0
    assert config.topics[1].keywords == {"全面从严治党": 1.0, "作风建设": 1.0, "八项规定": 1.0, "廉政": 1.0}
    assert config.schedule.digest_weekday == "mon" and config.schedule.digest_time == "08:00"
    assert config.smtp.security == "starttls" and config.smtp.port == 587
    assert config.web.base_url == "https://zhuanlan.example.org"
    assert str(config.tz) == "Asia/Shanghai"
    assert config.distributed.redis_url is None  # commented out: crawls run in one process
    assert config.distributed.key_prefix == "zhuanlan" and config.distributed.lease_seconds == 60


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (lambda d: d.update(colour="blue"), "colour", "unknown key"),
        (lambda d: d["distributed"].update(redis_url="127.0.0.1:6379"), "distributed.redis_url", "redis://"),
        (lambda d: d["distributed"].update(key_prefix="my queue"), "distributed.key_prefix", "expected 1-64"),
        (lambda d: d["distributed"].update(lease_seconds=1), "distributed.lease_seconds", ">= 5"),
        (lambda d: d["smtp"].update(port="587"), "smtp.port", "expected an integer"),
        (lambda d: d["smtp"].update(security="tls"), "smtp.security", "expected one of starttls, ssl, none"),
        (lambda d: d["sources"][1].update(kind="rss"), "sources[1].kind", "expected one of"),
        (lambda d: d["sources"][0].pop("url"), "sources[0].url", "missing"),
        (
            lambda d: d["sources"][0]["options"].update(dealy_seconds=1),
            "sources[0].options.dealy_seconds",
            "unknown option",
        ),
        (
            lambda d: d["sources"][1]["options"].update(list_type="js"),
            "sources[1].options.list_type",
            "expected one of",
        ),
        (
            lambda d: d["sources"][1]["options"].update(include=["("]),
            "sources[1].options.include",
            "invalid regular expression",
        ),
        (lambda d: d["recipients"][0].update(unit="不存在的局"), "recipients[0].unit", "configured unit"),
        (lambda d: d["recipients"][0].update(email="nobody"), "recipients[0].email", "email address"),
        (lambda d: d["schedule"].update(digest_weekday=1), "schedule.digest_weekday", "expected a non-empty string"),
        (lambda d: d["schedule"].update(digest_time="8am"), "schedule.digest_time", "HH:MM"),
        (lambda d: d["schedule"].update(timezone="Mars/Base"), "schedule.timezone", "IANA time zone"),
        (lambda d: d["units"][0].update(alias=["x"]), "units[0].alias", "unknown key"),
        (lambda d: d["topics"][0].update(keywords={"x": "high"}), "topics[0].keywords", "phrase = weight"),
        (lambda d: d["web"].update(port=70000), "web.port", "<= 65535"),
        (lambda d: d["sources"].append(dict(d["sources"][0])), "sources", "unique"),
    ],
)
def test_bad_values_name_the_key_path(mutate: object, path: str, words: str, tmp_path: Path) -> None:
    data = example()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path)
    assert info.value.path == path
    assert words in str(info.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp\nport = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_cli_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    data = EXAMPLE.read_text(encoding="utf-8").replace('security = "starttls"', 'security = "tls"')
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(data, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "zhuanlan_cli", "--config", str(cfg), "init"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert "smtp.security" in proc.stderr and "expected one of" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zhuanlan.toml"]  # nothing written


def test_database_url_from_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHUANLAN_DATABASE_URL", "postgresql://u@db.example/z")
    assert parse_config(example(), base_dir=tmp_path).database_url == "postgresql://u@db.example/z"


def test_feed_slugs_and_show_deleted(tmp_path: Path) -> None:
    config = parse_config(example(), base_dir=tmp_path)
    assert config.units[0].slug == "jiguan-gongwei" and config.units[1].slug is None
    assert config.columns[0].slug == "sizhong-quanhui" and config.topics[0].slug is None
    assert config.feeds.show_deleted is False
    data = example()
    data["feeds"]["show_deleted"] = True  # type: ignore[index]
    assert parse_config(data, base_dir=tmp_path).feeds.show_deleted is True

    bad: list[tuple[object, str, str]] = [
        (lambda d: d["units"][1].update(slug="Keji"), "units[1].slug", "lowercase letters"),
        (lambda d: d["units"][1].update(slug="ke_ji"), "units[1].slug", "lowercase letters"),
        (lambda d: d["units"][1].update(slug="ke--ji"), "units[1].slug", "single hyphens"),
        (lambda d: d["units"][1].update(slug="-keji"), "units[1].slug", "lowercase letters"),
        (lambda d: d["units"][1].update(slug="科技"), "units[1].slug", "lowercase letters"),
        (lambda d: d["units"][1].update(slug=3), "units[1].slug", "expected a string"),
        (lambda d: d["units"][1].update(slug="jiguan-gongwei"), "units[1].slug", "already used"),
        (lambda d: d["topics"][1].update(slug="a" * 81), "topics[1].slug", "at most 80"),
        (lambda d: d["feeds"].update(show_deleted="no"), "feeds.show_deleted", "true or false"),
    ]
    for mutate, path, words in bad:
        data = example()
        mutate(data)  # type: ignore[operator]
        with pytest.raises(ConfigError) as info:
            parse_config(data, base_dir=tmp_path)
        assert info.value.path == path, path
        assert words in str(info.value), path
    # Unique per kind only: a topic may share a unit's slug (their URLs differ by kind).
    data = example()
    data["topics"][0]["slug"] = "jiguan-gongwei"  # type: ignore[index]
    assert parse_config(data, base_dir=tmp_path).topics[0].slug == "jiguan-gongwei"


def test_check_config_names_every_problem_at_once_and_suggests_the_full_unit_name(tmp_path: Path) -> None:
    """Through the installed `zhuanlan` script: a config with problems in several tables gets one line
    per problem, each with its key path, in a single run; a unit's alias or short name used where the
    full name belongs is answered with that name."""
    text = EXAMPLE.read_text(encoding="utf-8")
    edits = [
        ('security = "starttls"', 'security = "tls"'),
        ('digest_time = "08:00"', 'digest_time = "8am"'),
        ('[[recipients]]\nunit = "张掖市科学技术局"', '[[recipients]]\nunit = "市科技局"'),  # its short name
        ('unit = "中共张掖市直机关工委"\ncolumn', 'unit = "机关工委"\ncolumn'),  # an alias
    ]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    text += '\n[[sources]]\nkey = "bad key"\nkind = "rss"\nurl = "ftp://x"\nunit = "不存在的局"\n'
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(text, encoding="utf-8")
    script = Path(sys.executable).parent / "zhuanlan"
    proc = subprocess.run(
        [str(script), "--config", str(cfg), "check-config"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    n = len(tomllib.loads(text)["sources"]) - 1
    expected = [
        ("recipients[0].unit", "units 中没有“市科技局”，是否指“张掖市科学技术局”？"),
        ("sources[0].unit", "units 中没有“机关工委”，是否指“中共张掖市直机关工委”？"),
        (f"sources[{n}].key", "expected letters"),
        (f"sources[{n}].kind", "expected one of wechat_album, site_column"),
        (f"sources[{n}].url", "expected an http(s) URL"),
        (f"sources[{n}].unit", "expected the name of a configured unit, got '不存在的局'"),
        ("schedule.digest_time", "HH:MM"),
        ("smtp.security", "expected one of starttls, ssl, none"),
    ]
    assert len(lines) == len(expected), lines
    for line, (path, words) in zip(lines, expected, strict=True):
        assert line.startswith(f"zhuanlan: configuration error: {path}: ") and words in line, (path, line)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
