"""Near-duplicate lookup: the MinHash LSH index against brute-force Jaccard over every stored text
(the baseline), on the same synthetic corpus with planted reposts; both confirmed by `overlap`."""

from __future__ import annotations

import random
import time

from bench.common import make_text
from pipeline.similarity import SignatureIndex, overlap, shingles, signature

TITLE = "Near-duplicates: MinHash LSH vs brute-force Jaccard"


def run(n_stored: int = 2000, n_reposts: int = 100, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    texts = [make_text(rng, 1000) for _ in range(n_stored)]
    start = time.perf_counter()
    sigs = [signature(t) for t in texts]
    sign_s = time.perf_counter() - start
    index = SignatureIndex()
    for i, sig in enumerate(sigs):
        index.add(i, sig)
    shingle_sets = [shingles(t) for t in texts]
    # reposts: another header and footer, or the first half only
    probes: list[tuple[int, str]] = []
    for _ in range(n_reposts):
        i = rng.randrange(n_stored)
        body = texts[i]
        variant = ("来源：机关党建\n" + body + "\n责任编辑：王某") if rng.random() < 0.5 else body[: len(body) // 2]
        probes.append((i, variant))

    def lsh(variant: str) -> int | None:
        for cand in index.candidates(signature(variant)):
            result = overlap(variant, texts[cand])
            if result is not None and result.is_duplicate:
                return cand
        return None

    def brute(variant: str) -> int | None:
        mine = shingles(variant)
        best, best_j = None, 0.0
        for j, other in enumerate(shingle_sets):
            inter = len(mine & other)
            jac = inter / max(1, len(mine | other))
            cont = inter / max(1, min(len(mine), len(other)))
            score = max(jac, cont)
            if score > best_j:
                best, best_j = j, score
        if best is None:
            return None
        result = overlap(variant, texts[best])
        return best if result is not None and result.is_duplicate else None

    t0 = time.perf_counter()
    lsh_hits = sum(lsh(v) == i for i, v in probes)
    lsh_s = (time.perf_counter() - t0) / n_reposts
    t0 = time.perf_counter()
    brute_hits = sum(brute(v) == i for i, v in probes)
    brute_s = (time.perf_counter() - t0) / n_reposts
    return [
        f"Corpus: {n_stored} stored synthetic texts (~1,000 characters); {n_reposts} reposts "
        "(half with another header/footer, half truncated to the first half).",
        f"Signing: {sign_s / n_stored * 1000:.2f} ms per text.",
        "",
        "| method | ms per lookup (mean over all probes) | reposts found | ratio to baseline |",
        "|---|---|---|---|",
        f"| MinHash LSH + overlap check | {lsh_s * 1000:.2f} | {lsh_hits}/{n_reposts} | {brute_s / lsh_s:.1f}× faster |",
        f"| brute-force Jaccard/containment (baseline) | {brute_s * 1000:.2f} | {brute_hits}/{n_reposts} | 1.0× |",
    ]
