"""Timing helpers and the synthetic Chinese corpus the benchmarks share."""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

# A pool of common words of the column's register, so generated text has realistic bigrams.
WORDS = (
    "学习 贯彻 全会 精神 党建 工作 高质量 发展 科技 创新 自立自强 乡村 振兴 生态 文明 法治 建设 民生 保障 "
    "教育 强国 卫生 健康 交通 强市 营商 环境 作风 建设 全面从严治党 基层 党组织 党员 干部 理论 武装 调查 研究 "
    "改革 开放 产业 升级 数字 经济 绿色 低碳 文化 旅游 融合 社会 治理 安全 稳定 群众 服务 责任 担当 实干 落实"
).split()


def make_text(rng: random.Random, n_chars: int) -> str:
    parts: list[str] = []
    size = 0
    while size < n_chars:
        sentence = "".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + "。"
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


@dataclass
class Timing:
    median: float
    low: float
    high: float
    runs: int

    def fmt(self, unit: str = "ms", scale: float = 1000.0) -> str:
        return (
            f"{self.median * scale:.2f} {unit} (min {self.low * scale:.2f}, max {self.high * scale:.2f}, n={self.runs})"
        )


def measure(func: Callable[[], object], repeat: int = 5) -> Timing:
    samples: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return Timing(statistics.median(samples), min(samples), max(samples), repeat)


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")
