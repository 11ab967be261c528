"""`make eval` / `zhuanlan eval`: every extraction check over the saved corpus, with verdicts.

Runs the WeChat checks (`crawler.evaluation.wechat`) on `<corpus>/wechat` and the website
scores (`crawler.evaluation.sites`, against trafilatura alone as the baseline) on
`<corpus>/sites`, then prints one verdict line per target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crawler.evaluation.wechat import eval_wechat, print_rows

if TYPE_CHECKING:
    from pathlib import Path


def main(corpus: Path, *, strict: bool = False) -> int:
    """Print the tables and one verdict line per target; with `strict`, exit 1 when a target is missed."""
    if not corpus.is_dir():
        print(f"no corpus at {corpus}: nothing to evaluate")
        return 1 if strict else 0
    missed = 0
    wechat_dir = corpus / "wechat"
    if wechat_dir.is_dir():
        print("== WeChat pages")
        rows = eval_wechat(wechat_dir)
        print_rows(rows)
        bad = sum(not r.ok for r in rows)
        print(f"WeChat: {len(rows) - bad}/{len(rows)} checks right")
        states = [r for r in rows if r.check == "state"]
        fields = [r for r in rows if r.check in {"title", "account", "published_at"}]
        for target, group in (
            ("every WeChat state page classified right", states),
            ("every WeChat article's title, account and publish time exact", fields),
        ):
            wrong = sum(not r.ok for r in group)
            print(f"target {'MISSED' if wrong else 'MET   '} {target}: {len(group) - wrong}/{len(group)}")
            missed += 1 if wrong else 0
    sites_dir = corpus / "sites"
    if sites_dir.is_dir():
        from crawler.evaluation.sites import main as evaluate_sites

        print("\n== Unit website pages")
        missed += 1 if evaluate_sites(sites_dir) else 0
    print(f"\n{'all targets met' if not missed else f'{missed} target group(s) missed'}")
    return 1 if strict and missed else 0
