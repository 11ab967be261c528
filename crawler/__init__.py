"""The Scrapy project: settings, items, spiders (thin shells) and parsing (pure functions).

Owns fetching and reading pages. Must not import pipeline, feeds, archive or the CLI:
what it knows of the stored corpus (keys already stored, list-page validators) is passed
to the spiders as constructor arguments.
"""
