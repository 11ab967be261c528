"""Run every benchmark and write docs/benchmarks.md (machine, date, commit, medians, ratios).

`BENCH_ONLY=scale,ingest` runs only the modules whose names (`bench/<name>_bench.py`) are listed
and replaces only their sections of an existing docs/benchmarks.md; every section says when, at
which commit and on which machine it was measured.
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    return proc.stdout.strip() or "unknown"


def section_stamp(when: datetime, commit: str, machine: str) -> str:
    """The first line of every section: when, at which commit and on which machine it was measured.
    A partial rerun (`BENCH_ONLY`) keeps the file's header, which names the machine of the last full
    run, so each section names its own."""
    return f"Measured {when:%Y-%m-%d %H:%M} UTC at commit {commit} on {machine}."


def discover(only: set[str] | None = None) -> list[tuple[str, Callable[[], list[str]]]]:
    """Every `bench/*_bench.py` module with a `TITLE` and a `run() -> list[str]` (markdown lines);
    with `only`, the modules of those names (`scale` for scale_bench.py)."""
    found: list[tuple[str, Callable[[], list[str]]]] = []
    paths = sorted(Path(__file__).parent.glob("*_bench.py"))
    names = {path.stem.removesuffix("_bench") for path in paths}
    if only is not None and only - names:
        raise SystemExit(
            f"BENCH_ONLY names no benchmark: {', '.join(sorted(only - names))} (known: {', '.join(sorted(names))})"
        )
    for path in paths:
        if only is not None and path.stem.removesuffix("_bench") not in only:
            continue
        module = importlib.import_module(f"bench.{path.stem}")
        found.append((str(module.TITLE), module.run))
    return found


def split_sections(text: str) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(the header's lines, title → the section's lines after its heading, the titles in order)
    of a benchmarks file written by `main`."""
    header: list[str] = []
    sections: dict[str, list[str]] = {}
    order: list[str] = []
    current: list[str] = header
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            order.append(title)
            current = sections[title] = []
        else:
            current.append(line)
    return header, sections, order


def merge(old: str, fresh: dict[str, list[str]]) -> str:
    """`old` with the sections of `fresh` replaced (or appended, when new), the rest kept as they were."""
    header, sections, order = split_sections(old)
    for title, lines in fresh.items():
        if title not in sections:
            order.append(title)
        sections[title] = ["", *lines, ""]
    out = list(header)
    for title in order:
        out += [f"## {title}", *sections[title]]
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> int:
    only_env = os.environ.get("BENCH_ONLY", "").strip()
    only = {name.strip() for name in only_env.split(",") if name.strip()} if only_env else None
    sections = discover(only)
    stamp = section_stamp(datetime.now(UTC), commit(), machine())
    target = ROOT / "docs" / "benchmarks.md"
    if only is not None and target.exists():
        fresh: dict[str, list[str]] = {}
        for title, func in sections:
            print(f"== {title}", flush=True)
            lines = func()
            print("\n".join(lines), flush=True)
            fresh[title] = [stamp, "", *lines]
        target.write_text(merge(target.read_text(encoding="utf-8"), fresh), encoding="utf-8")
        print(f"updated {', '.join(fresh)} in {target}")
        return 0
    out = [
        "# Benchmarks",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Commit: {commit()}",
        "- Each figure is the median of repeated runs (min and max in brackets); each ratio is to the",
        "  baseline measured in the same run. Produced by `make bench`; `make bench BENCH_ONLY=scale,ingest`",
        "  reruns some sections (each says when and at which commit it was measured).",
        "",
    ]
    for title, func in sections:
        print(f"== {title}", flush=True)
        lines = func()
        print("\n".join(lines), flush=True)
        out += [f"## {title}", "", stamp, "", *lines, ""]
    target.parent.mkdir(exist_ok=True)
    target.write_text("\n".join(out), encoding="utf-8")
    print(f"written {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
