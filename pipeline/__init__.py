"""From crawled pages to the corpus: the ingest (`ingest.py`: normalize → precompute → deduplicate →
tag → store, each stage a module of its own), where it runs (`worker/`), the tagging rules
(`tagging/`) and the corpus itself (`corpus/`: schema, database, runs, search index, tags).

Depends on `crawler.items` and the pure byline reader `crawler.parsing.bylines` only; never on
spiders, feeds, archive, the scheduler or the CLI.
"""
