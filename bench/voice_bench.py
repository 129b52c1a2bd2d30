"""Voice benchmark on real speech (LibriSpeech in ../shared/voice-samples) and on voiceprint search.

Prints: EER and the threshold at 1% false accepts (same/different speaker trials on test-other); voice
counting on synthetic dialogues and monologues; repeated-customer precision/recall over 200 synthetic
contacts; analysis speed as a real-time factor; nearest-neighbour search latency at 10k/100k/1M voiceprints
(numpy brute force, and usearch HNSW when installed).

    .venv/bin/python bench/voice_bench.py [--search-sizes 10000,100000,1000000] [--skip-search]
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
import warnings

import numpy as np

from bot.config import PROJECT_ROOT
from services.audio import decode
from services.voice.analysis import analyze, to_float
from services.voice.encoder import load_encoder

warnings.filterwarnings("ignore")
SHARED = PROJECT_ROOT.parent / "shared" / "voice-samples"


def eer(same: list[float], diff: list[float]) -> tuple[float, float, float]:
    """(equal error rate, its threshold, threshold at 1% false accepts)."""
    scores = np.array(same + diff)
    labels = np.array([1] * len(same) + [0] * len(diff))
    best = (1.0, 0.0)
    for t in np.unique(scores):
        far = float(((scores >= t) & (labels == 0)).sum()) / len(diff)
        frr = float(((scores < t) & (labels == 1)).sum()) / len(same)
        if abs(far - frr) < best[0]:
            best = (abs(far - frr), t)
            rate = (far + frr) / 2
    at_1pct = float(np.quantile(np.array(diff), 0.99))
    return rate, float(best[1]), at_1pct


def main(args: argparse.Namespace) -> None:
    encoder = load_encoder("resemblyzer")
    test_other = SHARED / "librispeech-test-other"
    if test_other.is_dir():
        speakers = {
            p.name: [to_float(decode(f.read_bytes())) for f in sorted(p.glob("*.flac"))]
            for p in sorted(test_other.iterdir())
            if p.is_dir()
        }
        embeddings = {(s, i): encoder.embed(w) for s, waves in speakers.items() for i, w in enumerate(waves)}
        same, diff = [], []
        for (a, ea), (b, eb) in itertools.combinations(embeddings.items(), 2):
            (same if a[0] == b[0] else diff).append(float(ea @ eb))
        rate, threshold, at_1pct = eer(same, diff)
        print(
            f"[{encoder.name}] EER {rate:.2%} at threshold {threshold:.3f}; threshold at 1% false accepts "
            f"{at_1pct:.3f} ({len(same)} same / {len(diff)} different-speaker trials)"
        )

        ids = list(speakers)
        correct = total = 0
        seconds = spent = 0.0
        for a, b in itertools.permutations(ids, 2):
            x, y = speakers[a], speakers[b]
            reference = embeddings[(a, 9)]
            for wav, expected in (
                (np.concatenate([x[0], y[0], x[1], y[1]]), 2),
                (np.concatenate([x[2], x[3]]), 1),
            ):
                started = time.perf_counter()
                result = analyze(wav, encoder, reference)
                spent += time.perf_counter() - started
                seconds += len(wav) / 16_000
                total += 1
                correct += len(result.voices) == expected
        print(
            f"[{encoder.name}] voice count right in {correct}/{total} ({correct / total:.1%}) of "
            f"{total // 2} dialogues and {total // 2} monologues; analysis {seconds / spent:.0f}x real time "
            f"({60 * spent / seconds:.2f} s per 60 s note)"
        )

        train = SHARED / "librispeech-train-clean-100"
        singles = [
            encoder.embed(to_float(decode(f.read_bytes()))) for f in sorted(train.glob("*.flac"))[:150]
        ]
        rng = random.Random(7)
        contacts: list[tuple[str, np.ndarray]] = []
        for sid in ids[:5]:  # five "professional customers", each in 10 contacts
            contacts += [(sid, embeddings[(sid, i)]) for i in range(10)]
        contacts += [(f"single{i}", e) for i, e in enumerate(singles)]
        rng.shuffle(contacts)
        matrix = np.stack([e for _, e in contacts])
        counts: dict[str, int] = {}
        for sid, _ in contacts:
            counts[sid] = counts.get(sid, 0) + 1
        k = 2
        for threshold in (encoder.same_speaker_threshold, 0.80, 0.85, 0.88):
            tp = fp = fn = 0
            for n, (sid, vector) in enumerate(contacts):
                flagged = int((matrix[:n] @ vector >= threshold).sum()) >= k
                truly = sum(1 for s, _ in contacts[:n] if s == sid) >= k
                tp += flagged and truly
                fp += flagged and not truly
                fn += truly and not flagged
            print(
                f"[{encoder.name}] repeated customer over {len(contacts)} contacts (K={k}, threshold "
                f"{threshold:.2f}): precision {tp / max(1, tp + fp):.1%}, recall {tp / max(1, tp + fn):.1%} "
                f"(tp {tp}, fp {fp}, fn {fn})"
            )
    else:
        print("LibriSpeech samples not found beside the checkout: accuracy and speed skipped")

    if not args.skip_search:
        search_bench(args)


def search_bench(args: argparse.Namespace) -> None:
    rng_np = np.random.default_rng(0)
    for size in (int(s) for s in args.search_sizes.split(",")):
        base = rng_np.standard_normal((size, 256), dtype=np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        queries = base[rng_np.integers(0, size, 200)] + 0.05 * rng_np.standard_normal(
            (200, 256), dtype=np.float32
        )
        latencies = []
        for q in queries:
            started = time.perf_counter()
            scores = base @ q
            top = np.argpartition(scores, -10)[-10:]
            latencies.append(time.perf_counter() - started)
        assert top.size == 10
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        print(
            f"search numpy brute force, {size:>9,} voiceprints ({base.nbytes / 2**20:.0f} MiB): "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )
        if size > args.usearch_max:
            continue
        try:
            from usearch.index import Index
        except ImportError:
            continue
        started = time.perf_counter()
        index = Index(ndim=256, metric="cos", dtype="f16")
        index.add(np.arange(size), base)
        built = time.perf_counter() - started
        latencies = []
        hits = 0
        for n, q in enumerate(queries):
            started = time.perf_counter()
            found = index.search(q, 10)
            latencies.append(time.perf_counter() - started)
            hits += int(np.argmax(base @ q) in set(found.keys.tolist()))
            assert n >= 0
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        print(
            f"search usearch HNSW f16,   {size:>9,} voiceprints (built in {built:.0f} s, "
            f"{index.memory_usage / 2**20:.0f} MiB): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
            f"recall@10 of the true nearest {hits / len(queries):.0%}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--search-sizes", default="10000,100000,1000000")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument(
        "--usearch-max", type=int, default=100_000, help="largest index to build (slow on 2 cores)"
    )
    main(parser.parse_args())
