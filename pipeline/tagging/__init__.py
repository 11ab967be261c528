"""Tagging: the office's vocabulary, attribution (with the byline reader of `crawler.parsing.bylines`),
column membership, topics and keywords. Pure functions: no database, no Scrapy, no clock."""
