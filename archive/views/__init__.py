"""The archive web app's pages, one module per page family (`archive.web` assembles them).

- `pages`: home, search, a unit's contributions, the digest archive.
- `story`: a story with its appearances and corrections; the archived original of a page.
- `feeds`: the published feed files and their directory page (not the `feeds` package, which writes them).
- `images`: the proxy for WeChat images (allow-listed hosts only) and its disk cache.
- `subscribers`: a digest recipient's unsubscribe page.
- `operator`: login, logout and the health view.
- `review`: the operator's attribution review and corrections.
- `digest_review`: the operator's review of a weekly issue: preview per recipient kind, edits, approval.
- `reports`: the operator's period reports (统计表, 汇编, 明细) as downloads.

Each module has `blueprint(ctx)`, which builds a Flask Blueprint named after the module from a
`ViewContext` (`archive.views.context`); endpoints are therefore `module.function`, e.g.
`url_for('story.story', guid=...)`. Views read the corpus; the only writes are a recipient's
opt-out, the operator's corrections and the operator's review of an issue.
"""
