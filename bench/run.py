"""Run every benchmark and write docs/benchmarks.md (machine, date, commit, medians, ratios)."""

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


def discover() -> list[tuple[str, Callable[[], list[str]]]]:
    """Every `bench/*_bench.py` module with a `TITLE` and a `run() -> list[str]` (markdown lines)."""
    found: list[tuple[str, Callable[[], list[str]]]] = []
    for path in sorted(Path(__file__).parent.glob("*_bench.py")):
        module = importlib.import_module(f"bench.{path.stem}")
        found.append((str(module.TITLE), module.run))
    return found


def main() -> int:
    sections = discover()
    out = [
        "# Benchmarks",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Commit: {commit()}",
        "- Each figure is the median of repeated runs (min and max in brackets); each ratio is to the",
        "  baseline measured in the same run. Produced by `make bench`.",
        "",
    ]
    for title, func in sections:
        print(f"== {title}", flush=True)
        lines = func()
        print("\n".join(lines), flush=True)
        out += [f"## {title}", "", *lines, ""]
    target = ROOT / "docs" / "benchmarks.md"
    target.parent.mkdir(exist_ok=True)
    target.write_text("\n".join(out), encoding="utf-8")
    print(f"written {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
