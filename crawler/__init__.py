"""The Scrapy project: settings, items, spiders (thin shells) and parsing (pure functions);
evaluation measures the parsers on saved real pages (it reads files, so it is not in parsing).

Owns fetching and reading pages. Must not import pipeline, feeds, archive or the CLI:
what it knows of the stored corpus (keys already stored, list-page validators) is passed
to the spiders as constructor arguments.
"""
