"""`make bench BENCH_ONLY=…`: only the named sections of docs/benchmarks.md are replaced."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench.run import discover, merge, section_stamp, split_sections

OLD = """# Benchmarks

- Date: 2026-12-01 10:00 UTC

## Near-duplicates

Measured 2026-12-01 10:00 UTC at commit aaa.

| a | b |

## The corpus at scale

old scale table

## Reports

report lines
"""


def test_merge_replaces_only_the_named_sections_in_place() -> None:
    merged = merge(OLD, {"The corpus at scale": ["Measured 2026-12-03 05:00 UTC at commit bbb.", "", "new table"]})
    header, sections, order = split_sections(merged)
    assert order == ["Near-duplicates", "The corpus at scale", "Reports"]
    assert "- Date: 2026-12-01 10:00 UTC" in header
    assert "new table" in sections["The corpus at scale"]
    assert "old scale table" not in merged
    assert sections["Near-duplicates"] == split_sections(OLD)[1]["Near-duplicates"]
    assert merged.endswith("report lines\n")


def test_merge_appends_a_section_the_file_did_not_have() -> None:
    merged = merge(OLD, {"Distributed crawl": ["fresh"]})
    assert split_sections(merged)[2][-1] == "Distributed crawl"
    assert "old scale table" in merged


def test_discover_selects_by_module_name_and_refuses_unknown_names() -> None:
    titles = [title for title, _ in discover({"dedup"})]
    assert titles == ["Near-duplicates: MinHash LSH vs brute-force Jaccard"]
    with pytest.raises(SystemExit, match="nosuch"):
        discover({"nosuch"})


def test_a_section_names_its_machine_as_well_as_its_date_and_commit() -> None:
    """A rerun section sits under the header of the last full run, which may be another machine."""
    stamp = section_stamp(datetime(2026, 12, 5, 2, 41, tzinfo=UTC), "19e2a72", "Intel(R) Xeon(R) Processor, 2 cores")
    assert stamp == "Measured 2026-12-05 02:41 UTC at commit 19e2a72 on Intel(R) Xeon(R) Processor, 2 cores."
