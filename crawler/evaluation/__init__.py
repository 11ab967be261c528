"""Measuring the parsers against saved real pages (`../shared/corpus`, never committed here).

Reads the corpus files and prints reports: the I/O that `crawler.parsing` must not do. Nothing
in the crawl imports it; `zhuanlan eval` and `make eval` run `crawler.evaluation.run.main`.
"""
