"""Feeds and the weekly digest: what zhuanlan publishes for people to read.

- `feeds.build`: pure: RSS 2.0 / Atom 1.0 / JSON Feed 1.1 documents from plain data.
- `feeds.opml`: pure: the OPML subscription list and the HTML feed directory page.
- `feeds.selection`: which stories each feed and the digest show, read from `pipeline.corpus.models`
  as that plain data.
- `feeds.publish`: writes changed feeds atomically into `<public_dir>/feeds/`.
- `feeds.digest`: pure: the weekly digest's content per recipient (HTML + text).
- `feeds.mail`: the SMTP transport and the exactly-once delivery loop.

Depends on `pipeline` (models, db) and `zhuanlan_config`; never on `archive` or the scheduler.
"""
