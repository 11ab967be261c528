"""The bundled sample sources: a small fake internet on 127.0.0.1 for `make demo` and end-to-end tests.

One WeChat account with an album (合集) for the column, the work committee's website and four unit
websites in real CMS structures (Hanweb, TRS, an old GBK site, a labelled site), all with original
invented content; `sample_config_toml` writes the matching zhuanlan config and `expected_truth` the
ground truth the end-to-end tests assert against. Nothing in the production crawl imports this package.
"""

from crawler.samples.catalog import Truth, TruthAppearance, TruthStory, expected_truth
from crawler.samples.sample_config import sample_config_toml
from crawler.samples.sources import SampleSources

__all__ = ["SampleSources", "Truth", "TruthAppearance", "TruthStory", "expected_truth", "sample_config_toml"]
