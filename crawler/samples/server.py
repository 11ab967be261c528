"""The sample sources as a command: a small fake internet on 127.0.0.1 (a WeChat album and five unit
websites), for `make demo`, the end-to-end tests and trying the crawlers by hand.

    python -m crawler.samples.server --port 8000          # serve until Ctrl-C
    python -m crawler.samples.server --print-config       # a matching zhuanlan.toml

Owns only the command line; the server is `crawler.samples.sources.SampleSources` (re-exported here
with `sample_config_toml` and `expected_truth`, the API the rest of the project imports).
"""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import date
from types import FrameType

from crawler.samples import site_pages as sp
from crawler.samples.catalog import expected_truth
from crawler.samples.sample_config import sample_config_toml
from crawler.samples.sources import Reply, SampleSources

__all__ = ["Reply", "SampleSources", "expected_truth", "main", "sample_config_toml"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crawler.samples.server", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--anchor", type=date.fromisoformat, default=None, help="'today' for the sample dates (YYYY-MM-DD)"
    )
    parser.add_argument("--print-config", action="store_true", help="print a matching zhuanlan.toml and exit")
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--web-port", type=int, default=8080)
    args = parser.parse_args(argv)
    sources = SampleSources(args.host, args.port, args.anchor)
    if args.print_config:
        base = f"http://{args.host}:{args.port}"
        print(sample_config_toml(base, smtp_port=args.smtp_port, web_port=args.web_port, anchor=sources.anchor))
        return 0
    try:
        base = sources.start()
    except OSError as exc:
        print(exc.strerror or str(exc))
        return 1
    print(f"sample sources at {base} (anchor {sources.anchor.isoformat()}); Ctrl-C to stop")
    print(f"  WeChat album:   {sources.album_url}")
    print(f"  committee site: {base}{sp.committee_list_path(1)}")
    print(f"  Hanweb site:    {base}{sp.HANWEB_LIST_PATH}")
    print(f"  TRS site:       {base}{sp.trs_list_path(0)}")
    print(f"  GBK site:       {base}{sp.gbk_list_path(1)}")
    print(f"  labels site:    {base}{sp.LABELS_LIST_PATH}?{sp.labels_list_query(1)}")
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sources.stop()
    print("sample sources stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
