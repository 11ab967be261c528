"""Keywords: jieba-rs segmentation with jieba's TF-IDF weighting gives exactly jieba's keywords.

The reference is jieba 0.42.1's own extractor (a private `jieba.Tokenizer` under `jieba.analyse.TFIDF`),
which computed the keywords before: a new rjieba or jieba version that cuts or weighs differently
fails here, on texts written for this test.
"""

from __future__ import annotations

import json
import logging
import marshal
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rjieba

from pipeline.tagging.rules import (
    _good_keyword,
    _jieba_cut,
    _load_idf,
    _load_keyword_model,
    _tfidf_ranking,
    default_cache_dir,
    keyword_text,
    pick_keywords,
    top_keywords,
    warm_up_keywords,
)

ROOT = Path(__file__).resolve().parent.parent

COLUMN_ARTICLE = """学习贯彻党的二十届四中全会精神
编者按：为推动市直机关党员干部把全会精神学深悟透，“张掖机关党建”公众号开设专栏，刊发市直各部门（单位）的学习体会。

以科技创新引领产业焕新
张掖市科学技术局党组书记、局长 王某某

全会提出，要加快高水平科技自立自强。我们将围绕“科技型中小企业—高新技术企业—科技领军企业”梯次培育体系，2026年新认定高新技术企业不少于30家，研发经费投入强度力争达到1.8%。
一是抓平台。依托国家农业科技园区和省级高新区，新建市级重点实验室5个、技术创新中心3个，推动大型科研仪器开放共享。
二是抓转化。办好第三届科技成果对接会，技术合同成交额突破12.5亿元，让更多成果从“实验室”走向“生产线”。
三是抓作风。严格落实中央八项规定精神，坚持“精准严实细”，把党建工作与业务工作同谋划、同部署、同考核。

（来源：张掖市直机关工委　编辑：李某　审核：赵某）
"""

MIXED_LATIN = """数字政府建设周报 Vol.12（2025-11-26）
本周上线的“掌上办”v2.3.1 版本支持 5G 网络和 AI 智能客服，访问地址 https://zwfw.example.gov.cn/app/index_2025.html 。
问题反馈请发邮件至 service_desk@example.gov.cn，或拨打 0936-8212345。IPv6 改造完成率 96.5%，较上月提升 3.2 个百分点。
C++ 和 Python 培训班报名人数达 120 人；AT&T 式的“大而全”平台不适合基层，小程序更受欢迎。
统计口径：2018.3.19 至 2025.10.31，数据来源为 gov-data_v1.2 接口，记录编号 A-17_B-03。
The quick brown fox jumps over the lazy dog, and the Open Data Index ranks the city 3rd in 2025.
"""

RARE_CHARACTERS = (
    "地名用字调研\r\n"
    "㐀㐁村和䶵乡的群众反映，古籍里的鿖字、豈字，以及𠀀、𪚥这些扩展区汉字，在系统里显示不全。\r\n"
    "调研组走访了𠮷野家门店和鿗鿘社区，记录了\u3000全角空格、\t制表符和\xa0不换行空格的用法；"
    "还有全角数字１２３、上标²、圆圈①和表情😀。\n"
    "结论：扩展区汉字㐀鿖豈𠀀要统一字库，2026年6月前完成改造。"
)

NOTICE = """关于举办2026年度市直机关党务干部培训班的通知

各党（工）委、党组（党委），市直各部门（单位）机关党组织：
经研究，定于12月3日至5日举办市直机关党务干部培训班。现将有关事项通知如下：
一、培训对象：市直各部门（单位）机关党委（党总支、党支部）书记、专职副书记，每单位1至2人。
二、培训内容：学习贯彻党的二十届四中全会精神；《中国共产党支部工作条例（试行）》解读；“三会一课”、主题党日等组织生活规范；发展党员工作流程。
三、时间地点：12月3日上午8:30报到，地点为市委党校（甘州区北环路88号）3楼302教室。
四、有关要求：请于11月28日17:00前将报名表（附件1）报送至市直机关工委组织部，电子版发送至 zyjggw_zzb@163.com。
联系人：张某，电话：0936—8612345、13909361234。

附件：1.培训报名表
　　　2.培训日程安排

中共张掖市直属机关工作委员会
2026年11月26日
"""

ENGLISH_MOSTLY = (
    "Weekly digest: 8 new posts in the column. Top topics — science & technology (科技创新), "
    "party building (机关党建) and rural revitalization (乡村振兴). Read more at mp.weixin.qq.com/s/AbC_dEf-123."
)

ODD_TEXTS = [
    "",
    "   \n\t",
    "2025 2026 一 二 三",
    "。。。，，，！！！",
    "科技",
    "科技创新",
    "the of and to in",
    "a.b-c_d 1.2.3 x_y-z %% ++ ## && ..",
    "作风建设作风建设作风建设作风建设",
    # 30 numbers, each three times, outweigh the one word: for k ≤ 5, jieba's top k * 4 + 10 hold no keyword
    " ".join(str(n) for n in range(10, 40) for _ in range(3)) + " 科技",
]

TEXTS = [
    COLUMN_ARTICLE,
    MIXED_LATIN,
    RARE_CHARACTERS,
    NOTICE,
    ENGLISH_MOSTLY,
    keyword_text("以科技创新引领产业焕新", COLUMN_ARTICLE * 3),
    COLUMN_ARTICLE + MIXED_LATIN + RARE_CHARACTERS + NOTICE,
    *ODD_TEXTS,
]


@pytest.fixture(scope="module")
def jieba_extractor() -> Any:
    """jieba's own TF-IDF extractor over a private tokenizer: how keywords were computed before."""
    with warnings.catch_warnings():
        # jieba opens its IDF table without closing it: jieba's ResourceWarning, not ours.
        warnings.simplefilter("ignore", ResourceWarning)
        import jieba
        import jieba.analyse

        jieba.setLogLevel(logging.WARNING)
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
        extractor = jieba.analyse.TFIDF()
        extractor.tokenizer = tokenizer
    return extractor


def _jieba_keywords(extractor: Any, text: str, k: int) -> list[str]:
    """The keywords as they were computed with jieba: its top k * 4 + 10, then our filter."""
    if k <= 0 or not text.strip():
        return []
    return pick_keywords(extractor.extract_tags(text, topK=k * 4 + 10), k)


def test_idf_table_and_stop_words_are_jiebas(jieba_extractor: Any) -> None:
    model = _load_keyword_model()
    assert model.idf == jieba_extractor.idf_freq
    assert model.median_idf == jieba_extractor.median_idf
    assert model.stop_words == jieba_extractor.stop_words
    assert len(model.idf) > 200_000 and "the" in model.stop_words


def test_the_idf_table_is_parsed_once_then_read_from_the_cache(tmp_path: Path) -> None:
    source = tmp_path / "idf.txt"
    source.write_text("学习 7.5\n贯彻 8.25\n精神 6.0\n", encoding="utf-8")
    cache = tmp_path / "cache"
    parsed = ({"学习": 7.5, "贯彻": 8.25, "精神": 6.0}, 7.5)
    assert _load_idf(source, cache) == parsed
    (written,) = cache.iterdir()
    assert marshal.loads(written.read_bytes()) == parsed
    # The next load takes what the cache holds (planted here to tell the two apart).
    written.write_bytes(marshal.dumps(({"学习": 1.0}, 1.0)))
    assert _load_idf(source, cache) == ({"学习": 1.0}, 1.0)
    # A changed idf.txt is another cache file: parsed again.
    source.write_text("学习 7.5\n贯彻 8.25\n", encoding="utf-8")
    assert _load_idf(source, cache) == ({"学习": 7.5, "贯彻": 8.25}, 8.25)
    assert len(list(cache.iterdir())) == 2


@pytest.mark.parametrize("content", [b"", b"\x00garbage", marshal.dumps([1, 2]), marshal.dumps(({}, 1.0))])
def test_an_unreadable_idf_cache_is_parsed_again_and_rewritten(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "idf.txt"
    source.write_text("学习 7.5\n贯彻 8.25\n", encoding="utf-8")
    cache = tmp_path / "cache"
    _load_idf(source, cache)
    (written,) = cache.iterdir()
    written.write_bytes(content)
    assert _load_idf(source, cache) == ({"学习": 7.5, "贯彻": 8.25}, 8.25)
    assert marshal.loads(written.read_bytes()) == ({"学习": 7.5, "贯彻": 8.25}, 8.25)
    assert [p.name for p in cache.iterdir()] == [written.name]  # no temporary file left behind


def test_an_idf_cache_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "idf.txt"
    source.write_text("学习 7.5\n", encoding="utf-8")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    assert _load_idf(source, blocked) == ({"学习": 7.5}, 7.5)
    assert _load_idf(source, None) == ({"学习": 7.5}, 7.5)


def test_the_cache_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "zhuanlan"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "zhuanlan"


@pytest.mark.parametrize("text", TEXTS)
def test_segmentation_is_jiebas(jieba_extractor: Any, text: str) -> None:
    model = _load_keyword_model()
    assert _jieba_cut(model.segmenter, text) == list(jieba_extractor.tokenizer.cut(text))


@pytest.mark.parametrize("text", TEXTS)
def test_ranking_and_keywords_are_jiebas(jieba_extractor: Any, text: str) -> None:
    model = _load_keyword_model()
    ranking = _tfidf_ranking(_jieba_cut(model.segmenter, text), model)
    assert ranking == jieba_extractor.extract_tags(text, topK=None)
    for k in (0, 1, 3, 8, 20):
        assert top_keywords(text, k) == _jieba_keywords(jieba_extractor, text, k)


def test_ranking_is_jiebas_when_the_remembered_weights_start_over(
    jieba_extractor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model remembers each word's weight; past the limit it forgets them all and starts over.
    monkeypatch.setattr("pipeline.tagging.rules._WEIGHTS_MAX", 5)
    model = _load_keyword_model()
    model.weights.clear()
    for text in (COLUMN_ARTICLE, NOTICE, COLUMN_ARTICLE):
        ranking = _tfidf_ranking(_jieba_cut(model.segmenter, text), model)
        assert ranking == jieba_extractor.extract_tags(text, topK=None)
        assert len(model.weights) <= 5


def test_what_jieba_rs_cuts_differently_is_cut_as_jieba_does() -> None:
    model = _load_keyword_model()
    # jieba-rs alone keeps these whole (and joins 㐀㐀 into one word); jieba does not.
    assert model.segmenter.cut("版本v1.2.3于2018.3.19发布") == ["版本", "v1.2.3", "于", "2018.3.19", "发布"]
    assert _jieba_cut(model.segmenter, "版本v1.2.3于2018.3.19发布") == [
        *("版本", "v1.2", ".", "3", "于", "2018.3", ".", "19", "发布"),
    ]
    assert _jieba_cut(model.segmenter, "a_b-c 12.5% 㐀㐀 豈") == [
        *("a", "_", "b", "-", "c", " ", "12.5%", " ", "㐀", "㐀", " ", "豈"),
    ]


def test_keywords_of_the_column_article() -> None:
    keywords = top_keywords(keyword_text("以科技创新引领产业焕新", COLUMN_ARTICLE))
    assert len(keywords) == 8
    assert "科技" in keywords and "高新技术" in keywords
    assert all(_good_keyword(word) for word in keywords)


def test_words_added_to_rjiebas_global_dictionary_do_not_change_keywords() -> None:
    text = "甲乙丙丁戊己庚辛壬癸，天干地支纪年法。" * 3
    before = top_keywords(text)
    global_cut = rjieba.cut(text)
    rjieba.add_word("丙丁戊己", 10**9, None)  # the module-level instance; nothing in zhuanlan uses it
    assert rjieba.cut(text) != global_cut
    assert "丙丁戊己" in rjieba.cut(text)
    assert top_keywords(text) == before
    assert "丙丁戊己" not in top_keywords(text, 50)


def test_the_keyword_model_loads_rjiebas_segmenter_without_its_unused_default_one() -> None:
    """A fresh process: loading the model leaves the `rjieba` package (whose import builds a default
    segmenter, 0.1 s of CPU) unimported, gives the same keywords as the plain import, and a later
    `import rjieba` still works, with the same class."""
    script = textwrap.dedent(
        """
        import json, sys
        from pipeline.tagging.rules import _load_keyword_model, top_keywords
        model = _load_keyword_model()
        package_loaded = "rjieba" in sys.modules
        ours = top_keywords(sys.argv[1])
        import rjieba
        print(json.dumps({
            "package_loaded": package_loaded,
            "ours": ours,
            "same_class": type(model.segmenter) is rjieba.Jieba,
            "cut": rjieba.Jieba().cut("学习贯彻四中全会精神") == model.segmenter.cut("学习贯彻四中全会精神"),
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, COLUMN_ARTICLE], capture_output=True, text=True, cwd=ROOT, check=True
    )
    result = json.loads(done.stdout)
    assert result["package_loaded"] is False
    assert result["ours"] == top_keywords(COLUMN_ARTICLE)
    assert result["same_class"] is True and result["cut"] is True


def test_keywords_from_many_threads_are_the_same() -> None:
    warm_up_keywords()
    expected = {text: top_keywords(text) for text in TEXTS}
    failures: list[str] = []

    def work(run: Callable[[str], list[str]]) -> None:
        for _ in range(20):
            for text in TEXTS:
                if run(text) != expected[text]:
                    failures.append(text)

    threads = [threading.Thread(target=work, args=(top_keywords,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
