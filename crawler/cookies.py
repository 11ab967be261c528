"""Scrapy's cookie middleware without a network look-up of the public suffix list.

Scrapy splits cookie domains with a default `tldextract.TLDExtract`, which on first use tries to
download the public suffix list (and logs a traceback where there is no internet). The suffix
snapshot bundled with tldextract is enough to scope cookies, and a crawl must not reach hosts
other than its sources, so the splitter here never fetches.
"""

from __future__ import annotations

import scrapy.downloadermiddlewares.cookies as scrapy_cookies
from tldextract import TLDExtract

scrapy_cookies._split_domain = TLDExtract(suffix_list_urls=(), include_psl_private_domains=True)


class OfflineCookiesMiddleware(scrapy_cookies.CookiesMiddleware):
    """Scrapy's CookiesMiddleware; importing this module makes its domain splitter offline."""
