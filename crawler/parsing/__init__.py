"""Pure parsing functions over response bytes: no Scrapy, no I/O, no clock."""
