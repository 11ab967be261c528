"""Spiders: thin shells that schedule requests and hand responses to `crawler.parsing`."""
