"""Scrapy item pipelines (normalize, deduplicate, tag, store) and the corpus schema.

Depends on `crawler.items` only; never on spiders, feeds, archive, the scheduler or the CLI.
"""
