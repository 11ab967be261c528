"""What a crawl process and its pipeline worker load before their first page (issue 11): heavy
packages that only some pages need are imported when needed (the keyword model by the first page
tagged), Scrapy's remote-control server is not started, and the `zhuanlan` command's exit status is main's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scrapy.crawler import Crawler
from scrapy.settings import Settings

from crawler.samples.server import SampleSources
from crawler.spiders.site_column import SiteColumnSpider
from pipeline.corpus.db import make_engine, session_factory
from tests.faults_support import cli_env, read_corpus, run_cli, write_config

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> set[str]:
    """Top-level packages imported by a fresh interpreter after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.split())


def test_crawl_process_loads_no_fallback_extractor_or_datasketch() -> None:
    loaded = _modules_after(
        "import crawler.process, pipeline.worker.shell, pipeline.worker.client\n"
        "from scrapy.crawler import Crawler\n"
        "from crawler.process import crawl_settings\n"
        "settings = crawl_settings(database_url='sqlite://', config_path='z.toml', run_id=1, crawl={\n"
        "    'user_agent': 'x', 'timeout_seconds': 5, 'download_delay_seconds': 0, 'max_page_bytes': 1000,\n"
        "    'obey_robots': True})\n"
        "settings.get_component_priority_dict_with_base('EXTENSIONS')  # imports every listed one\n"
        "from crawler.spiders.site_column import SiteColumnSpider\n"
        "from crawler.spiders.wechat_album import WechatAlbumSpider\n"
        "from pipeline.precompute import precompute\n"
        "from pipeline.similarity import signature\n"
        "signature('学习贯彻党的二十届四中全会精神，推动高质量发展')"
    )
    assert "scrapy" in loaded and "numpy" in loaded  # the probe did import what a crawl uses
    assert not loaded & {"trafilatura", "datasketch", "scipy", "aiohttp"}


def test_crawl_process_loads_the_keyword_model_only_for_a_page_to_tag(tmp_path: Path) -> None:
    # A cycle that finds nothing new (most scheduled crawls) never tags: 0.5 s and 100 MB saved.
    # (`rjieba.rjieba` is the segmenter's extension module, which the model loads by itself.)
    url = f"sqlite:///{tmp_path / 'z.db'}"
    probe = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from scrapy.crawler import Crawler\n"
        "from crawler.items import STATE_OK, ArticleItem\n"
        "from crawler.process import crawl_settings\n"
        "from crawler.spiders.site_column import SiteColumnSpider\n"
        "from pipeline.corpus.db import make_engine, upgrade\n"
        "from pipeline.worker.shell import IngestPipeline, prepare\n"
        "from pipeline.record import SourceRef\n"
        f"upgrade(make_engine({url!r}))\n"
        f"settings = crawl_settings(database_url={url!r}, config_path='absent.toml', run_id=1, crawl={{\n"
        "    'user_agent': 'x', 'timeout_seconds': 5, 'download_delay_seconds': 0, 'max_page_bytes': 1000,\n"
        "    'obey_robots': True})\n"
        "pipeline = IngestPipeline.from_crawler(Crawler(SiteColumnSpider, settings))\n"
        "print('rjieba.rjieba' in sys.modules)\n"
        "item = ArticleItem(source_key='s', source_kind='site_column', url='http://127.0.0.1/a.html',\n"
        "    canonical_key='127.0.0.1/a.html', fetched_at=datetime.now(UTC), state=STATE_OK,\n"
        "    title='学习贯彻全会精神', body_text='机关党组织深入学习贯彻全会精神。' * 20, body_html='<p>x</p>')\n"
        "record = prepare(item, SourceRef('s'), pipeline.tagger, precompute_here=False, tag_here=True)\n"
        "print('rjieba.rjieba' in sys.modules, bool(record.tags.keywords))\n"
        "pipeline.runner.release()\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "True"]


def test_the_crawl_process_leaves_the_database_to_its_pipeline_worker(tmp_path: Path, db_url: str) -> None:
    # `zhuanlan crawl` forks its worker first: the worker syncs the configuration, plans the run,
    # stores the pages and closes the run, while the crawl process imports Scrapy and crawls. The
    # crawl process never imports SQLAlchemy, the driver or the corpus modules (0.3 s of start-up).
    with SampleSources(port=0) as samples:
        cfg = write_config(tmp_path / "zhuanlan.toml", samples)
        assert run_cli(cfg, db_url, "init").returncode == 0
        probe = (
            "import json, sys, zhuanlan_cli\n"
            f"code = zhuanlan_cli.main(['--config', {str(cfg)!r}, 'crawl', '--json'])\n"
            "database = ('sqlalchemy', 'psycopg', 'pipeline.corpus.db', 'pipeline.corpus.models')\n"
            "loaded = sorted(m for m in sys.modules if m.startswith(database))\n"
            "print(json.dumps({'code': code, 'loaded': loaded}))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=cli_env(db_url), timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        *_, summary_line, probe_line = done.stdout.strip().splitlines()
        summary = json.loads(summary_line)
        assert json.loads(probe_line) == {"code": 0, "loaded": []}
        assert summary["status"] == "ok" and summary["failed"] == 0, summary
        engine = make_engine(db_url)
        with session_factory(engine)() as session:
            assert len(read_corpus(session).keys) == samples.truth()["appearance_count"]
        engine.dispose()


def test_worker_stages_load_no_datasketch() -> None:
    loaded = _modules_after(
        "import pipeline.ingest, pipeline.worker.server\n"
        "from pipeline.similarity import SignatureIndex, signature\n"
        "index = SignatureIndex()\n"
        "index.add(1, signature('学习贯彻党的二十届四中全会精神，推动高质量发展'))\n"
        "index.candidates(signature('学习贯彻党的二十届四中全会精神'))"
    )
    assert "sqlalchemy" in loaded
    assert not loaded & {"datasketch", "scipy", "trafilatura"}


def test_trafilatura_is_still_used_for_pages_without_a_known_body() -> None:
    from crawler.parsing.site_article import extract_article

    paragraphs = "".join(f"<p>第{i}段：机关党组织深入学习贯彻全会精神，结合实际抓好贯彻落实。</p>" for i in range(12))
    page = f"<html><head><title>学习体会</title></head><body><div class='x'><h1>学习体会</h1>{paragraphs}</div></body></html>"
    article = extract_article(page, "http://127.0.0.1/a.html", {})
    assert article.method["body"] == "trafilatura"
    assert "第11段" in article.body_text


def test_scrapy_remote_control_is_off() -> None:
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    crawler = Crawler(SiteColumnSpider, settings)
    assert crawler.settings.getbool("REMOTE_CONTROL_ENABLED") is False
    extensions = crawler.settings.getwithbase("EXTENSIONS")
    assert "scrapy.extensions.remote_control.RemoteControl" not in extensions
    assert "scrapy.extensions.corestats.CoreStats" in extensions  # the others are Scrapy's own


def test_command_exit_status_is_mains(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    done = subprocess.run(
        [sys.executable, "-m", "zhuanlan_cli", "--config", str(missing), "status"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "configuration error" in done.stderr
