"""Feeds and the weekly digest: what zhuanlan publishes for people to read.

- `feeds.build`: pure: RSS 2.0 / Atom 1.0 / JSON Feed 1.1 documents from plain data.
- `feeds.opml`: pure: the OPML subscription list and the HTML feed directory page.
- `feeds.selection`: which stories each feed and the digest show, read from `pipeline.corpus.models`
  as that plain data.
- `feeds.publish`: writes changed feeds atomically into `<public_dir>/feeds/`, and their copies
  into the database, which every web app serves.
- `feeds.digest`: pure: the weekly digest's content per recipient (HTML + text).
- `feeds.mail`: the SMTP transport and the exactly-once delivery loop.
- `feeds.report`: what a column's report for any period holds (counts, ranks, 明细, 汇编 order);
  `feeds.report_files` writes it as xlsx, docx and csv.

Depends on `pipeline` (models, db) and `zhuanlan_config`; never on `archive` or the scheduler.
"""
