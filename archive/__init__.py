"""The read side for people: query parsing, search, exports and the web app.

Reads the corpus through `pipeline.corpus.models`; never writes articles (the only write is a
recipient's opt-out from the unsubscribe page). Must not import crawler spiders, the scheduler,
or feeds beyond the period reports (`feeds.report`, `feeds.report_files`), which the web app offers.
"""
