"""Voice benchmark on real speech (LibriSpeech in ../shared/voice-samples) and on voiceprint search.

Prints: EER and the threshold at 1% false accepts (same/different speaker trials on test-other); voice
counting on synthetic dialogues and monologues; repeated-customer precision/recall over 200 synthetic
contacts; analysis speed as a real-time factor; nearest-neighbour search latency at 10k/100k/1M voiceprints
(numpy brute force, and the worker's FAISS index).

    .venv/bin/python bench/voice_bench.py [--search-sizes 10000,100000,1000000] [--skip-search] [--skip-ecapa] [--skip-resemblyzer]
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
import warnings
from collections.abc import Callable

import numpy as np

from infra.settings import PROJECT_ROOT
from services.audio import decode
from services.voice.analysis import analyze, to_float
from services.voice.encoder import SAMPLE_RATE, SpeechBrainEncoder, load_encoder
from voicelab.evaluation import eer
from voicelab.random_checkpoint import write_random_checkpoint

warnings.filterwarnings("ignore")
SHARED = PROJECT_ROOT.parent / "shared" / "voice-samples"


def main(args: argparse.Namespace) -> None:
    encoder = load_encoder("resemblyzer")
    test_other = SHARED / "librispeech-test-other"
    if args.skip_resemblyzer:
        pass
    elif test_other.is_dir():
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
        repeats(encoder.name, contacts, (encoder.same_speaker_threshold, 0.80, 0.85, 0.88), "test-other")

        # Held out: speakers none of the above used. 20 "professional customers", each utterance cut into three
        # 4 s contacts, among 81 single customers.
        held_out = sorted(train.glob("*.flac"))[150:]
        contacts = []
        for n, path in enumerate(held_out):
            wav = to_float(decode(path.read_bytes()))
            if n < 20 and len(wav) >= 12 * SAMPLE_RATE:
                contacts += [
                    (f"held{n}", encoder.embed(wav[i * 4 * SAMPLE_RATE : (i + 1) * 4 * SAMPLE_RATE]))
                    for i in range(3)
                ]
            else:
                contacts.append((f"held{n}", encoder.embed(wav)))
        rng.shuffle(contacts)
        repeats(encoder.name, contacts, (0.80, 0.85, 0.88), "held-out train-clean-100")
    else:
        print("LibriSpeech samples not found beside the checkout: accuracy and speed skipped")

    if not args.skip_ecapa and test_other.is_dir():
        ecapa_speed(args)
    if not args.skip_search:
        search_bench(args)


def repeats(
    backend: str, contacts: list[tuple[str, np.ndarray]], thresholds: tuple[float, ...], label: str
) -> None:
    """Contacts arrive in order; one is flagged when its customer matches >= K earlier contacts."""
    matrix = np.stack([e for _, e in contacts])
    k = 2
    for threshold in thresholds:
        tp = fp = fn = 0
        for n, (sid, vector) in enumerate(contacts):
            flagged = int((matrix[:n] @ vector >= threshold).sum()) >= k
            truly = sum(1 for s, _ in contacts[:n] if s == sid) >= k
            tp += flagged and truly
            fp += flagged and not truly
            fn += truly and not flagged
        print(
            f"[{backend}] repeated customer, {label}, {len(contacts)} contacts (K={k}, threshold "
            f"{threshold:.2f}): precision {tp / max(1, tp + fp):.1%}, recall {tp / max(1, tp + fn):.1%} "
            f"(tp {tp}, fp {fp}, fn {fn})"
        )


def dialogues(count: int, seconds: float = 60.0) -> list[np.ndarray]:
    """Two LibriSpeech speakers taking turns with 0.3-1.5 s pauses, cut to `seconds`: a voice note's shape."""
    test_other = SHARED / "librispeech-test-other"
    folders = sorted(p for p in test_other.iterdir() if p.is_dir())
    rng = random.Random(3)
    out = []
    for n in range(count):
        a, b = folders[n % len(folders)], folders[(n + 1) % len(folders)]
        turns = [sorted(a.glob("*.flac")), sorted(b.glob("*.flac"))]
        parts, total, i = [], 0.0, 0
        while total < seconds:
            wav = to_float(decode(turns[i % 2][(i // 2) % len(turns[i % 2])].read_bytes()))
            wav = wav[: int(rng.uniform(2, 6) * SAMPLE_RATE)]  # a turn of 2-6 s
            pause = np.zeros(int(rng.uniform(0.3, 1.5) * SAMPLE_RATE), dtype=np.float32)
            parts += [wav, pause]
            total += (len(wav) + len(pause)) / SAMPLE_RATE
            i += 1
        out.append(np.concatenate(parts)[: int(seconds * SAMPLE_RATE)])
    return out


def ecapa_speed(args: argparse.Namespace) -> None:
    """ECAPA C=1024 with random weights (the hub's cannot be fetched here): speed, and how close the fast
    path stays to the plain fp32 model on the same windows."""
    import tempfile
    from pathlib import Path

    import torch

    from services.voice.analysis import speech_mask

    torch.set_num_threads(args.threads)
    notes = dialogues(args.ecapa_notes)
    with tempfile.TemporaryDirectory() as tmp:
        write_random_checkpoint(Path(tmp))
        plain = SpeechBrainEncoder(Path(tmp), precision="fp32")
        fast = SpeechBrainEncoder(Path(tmp), precision="bf16")

        def naive_analysis(wav: np.ndarray) -> None:
            # Every overlapping 1.5 s window (0.75 s hop), silence included, plus a whole-recording pass.
            size, hop = int(1.5 * SAMPLE_RATE), int(0.75 * SAMPLE_RATE)
            chunks = np.stack([wav[s : s + size] for s in range(0, len(wav) - size + 1, hop)])
            with torch.inference_mode():
                plain._model.encode_batch(torch.from_numpy(chunks))
                plain._model.encode_batch(torch.from_numpy(wav)[None])

        print(f"[ecapa C=1024] compiling (torch.compile, {args.threads} threads)...")
        started = time.perf_counter()
        compiled = SpeechBrainEncoder(Path(tmp), precision="bf16", runtime="compiled")
        print(f"[ecapa C=1024] compiled in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        openvino = SpeechBrainEncoder(Path(tmp), precision="bf16", runtime="openvino")
        print(f"[ecapa C=1024] converted to OpenVINO in {time.perf_counter() - started:.0f} s")
        variants: dict[str, Callable[[np.ndarray], object]] = {
            "plain fp32, one pass over the whole note (the issue's 2.1 s baseline)": plain.embed,
            "naive analysis (fp32, overlapping windows, silence included, whole pass)": naive_analysis,
            "fast analysis (VAD, speech-only windows, batched, bf16)": lambda w: analyze(w, fast),
            "fast analysis, compiled (VOICE_RUNTIME=compiled)": lambda w: analyze(w, compiled),
            "fast analysis, OpenVINO (VOICE_RUNTIME=openvino)": lambda w: analyze(w, openvino),
        }
        if args.fast_only:
            del variants["naive analysis (fp32, overlapping windows, silence included, whole pass)"]
        for run in variants.values():
            run(notes[0])  # warm-up
        spent: dict[str, list[float]] = {label: [] for label in variants}
        for wav in notes:  # interleaved, so that a noisy neighbour slows every variant alike
            for label, run in variants.items():
                started = time.perf_counter()
                run(wav)
                spent[label].append(time.perf_counter() - started)
        baseline = float(np.median(spent[next(iter(variants))]))
        for label, seconds in spent.items():
            median = float(np.median(seconds))
            print(
                f"[ecapa C=1024] {label}: {median:.2f} s per 60 s note ({60 / median:.0f}x real time), "
                f"{median / baseline:.2f} of the plain pass = {2.1 * median / baseline:.2f} s at a 2.1 s baseline"
            )
        for label, encoder in (("bf16", fast), ("bf16 compiled", compiled), ("bf16 OpenVINO", openvino)):
            cosines = []
            for wav in notes:
                mask = speech_mask(wav)
                reference, _ = plain.windows(wav, mask)
                candidate, _ = encoder.windows(wav, mask)
                cosines += list(np.sum(reference * candidate, axis=1))
            print(
                f"[ecapa C=1024] {label} vs plain fp32 on the same {len(cosines)} windows: cosine min "
                f"{min(cosines):.5f}, mean {np.mean(cosines):.5f}"
            )


def search_bench(args: argparse.Namespace) -> None:
    """The worker's VoiceprintIndex (services/voice/index.py) against numpy brute force, on voiceprints with
    speaker structure: speakers with 5 prints each (same-speaker cosine about 0.9), queried with a new print
    of a stored speaker. Recall: of the stored prints a brute-force scan finds at cosine >= 0.8, the share
    the index returns."""
    from services.voice.index import VoiceprintIndex

    dim, each, threshold = 256, 5, 0.8
    rng = np.random.default_rng(0)
    for size in (int(s) for s in args.search_sizes.split(",")):
        count = size // each
        centres = rng.standard_normal((count, dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        base = np.empty((size, dim), dtype=np.float32)
        for first in range(0, size, 100_000):  # in chunks: the noise for 1M at once would double memory
            rows = np.arange(first, min(size, first + 100_000))
            chunk = centres[rows // each] + 0.02 * rng.standard_normal((len(rows), dim), dtype=np.float32)
            base[rows] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
        owners = rng.integers(0, count, 200)
        queries = centres[owners] + 0.02 * rng.standard_normal((200, dim), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)

        latencies, truth = [], []
        for q in queries:
            started = time.perf_counter()
            scores = base @ q
            hits = np.flatnonzero(scores >= threshold)
            latencies.append(time.perf_counter() - started)
            truth.append(set((hits + 1).tolist()))
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        print(
            f"search numpy brute force, {size:>9,} voiceprints ({base.nbytes / 2**20:.0f} MiB): "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )

        started = time.perf_counter()
        index = VoiceprintIndex(dim)
        for first in range(0, size, 100_000):  # as a worker grows it: exact first, IVF from 200k
            index.add(np.arange(first + 1, min(size, first + 100_000) + 1), base[first : first + 100_000])
        built = time.perf_counter() - started
        latencies, found, expected = [], 0, 0
        for q, want in zip(queries, truth, strict=True):
            started = time.perf_counter()
            got = index.search(q, 64)
            latencies.append(time.perf_counter() - started)
            found += len(want & {i for i, s in got if s >= threshold})
            expected += len(want)
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        kind = f"FAISS IVF nprobe {index.nprobe}" if index.ivf else "FAISS flat (exact)"
        print(
            f"search VoiceprintIndex,   {size:>9,} voiceprints ({kind}, built in {built:.0f} s): "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, recall {found / max(1, expected):.1%} "
            f"of {expected} matches at cosine >= {threshold}"
        )
        del base, index


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--search-sizes", default="10000,100000,1000000")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-ecapa", action="store_true")
    parser.add_argument("--skip-resemblyzer", action="store_true")
    parser.add_argument("--ecapa-notes", type=int, default=10, help="60 s dialogues to time ECAPA on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fast-only", action="store_true", help="time only the fast ECAPA paths")
    main(parser.parse_args())
