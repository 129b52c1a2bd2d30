"""The speech pipeline on an evaluation set of synthesised Russian promoter-customer dialogues with known
script content (issue #25): WER, each default criterion's precision and recall of "done", the share of
contacts decided automatically and the agreement of those decisions with the ground truth, and speed.

The set is voicelab.speech_eval's: N dialogues planned from (seed, index), the promoter in festvox-ru's
voice (one man, pitch-shifted by up to 2 semitones), customers in espeak-ng's Russian variants, one phone in
a simulated shop (room, shop noise, band limits, Opus). The pipeline is the one production runs: the
worker's voice encoder and diarisation (services.voice.analysis.analyze with the promoter's enrolment), the
recording's own voice flags, Whisper as SPEECH_* configures it, the default script with one product name,
the default verdict rules (nothing is fitted here).

Audio is cached under var/speech_eval/seed-<seed>/ (NNN.ogg, NNN-enrolment.ogg, NNN.json); results go, one
line per dialogue, to --out's .jsonl beside the JSON summary, so an interrupted run is resumed with --resume.

    nice -n 19 .venv/bin/python bench/speech_eval.py [--n 200] [--seed 25] [--out var/speech_eval/run.json]

A change to the script matching or the verdict rules is measured without the audio, over the transcripts and
diarisation a run kept: `--rescore var/speech_eval/run.jsonl --out var/speech_eval/rescored.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from infra.settings import DEFAULT_VAR, PROJECT_ROOT
from voicelab import fieldsim, speech_eval

SHARED = PROJECT_ROOT.parent / "shared" / "voice-samples" / "librispeech-train-clean-100"


def babble_bank(count: int = 24) -> list[np.ndarray]:
    """Far talkers for the shop's babble: LibriSpeech train-clean-100 utterances (English; any language
    is babble), or none, leaving pink noise, hum and clatter."""
    from services.audio import decode
    from services.voice.analysis import to_float

    if not SHARED.is_dir():
        return [np.zeros(fieldsim.SAMPLE_RATE, np.float32)]
    files = sorted(SHARED.rglob("*.flac"))
    random.Random(0).shuffle(files)
    return [fieldsim.trim(to_float(decode(f.read_bytes()))) for f in files[:count]]


def cached(
    folder: Path, plan: speech_eval.Plan, state: dict[str, Any]
) -> tuple[bytes, bytes, dict[str, Any]]:
    stem = folder / f"{plan.index:03d}"
    meta_path = stem.with_suffix(".json")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return stem.with_suffix(".ogg").read_bytes(), Path(f"{stem}-enrolment.ogg").read_bytes(), meta
    if "rooms" not in state:
        state["rooms"] = fieldsim.Rooms(random.Random(f"speech-eval-rooms-{plan.seed}"), 8)
        state["babble"] = babble_bank()
    rendered = speech_eval.render(plan, state["rooms"], state["babble"])
    meta = plan.meta() | {
        "duration": rendered.duration,
        "customer_share": rendered.customer_share,
        "turns": rendered.turns,
        "reference": plan.reference(),
    }
    stem.with_suffix(".ogg").write_bytes(rendered.opus)
    Path(f"{stem}-enrolment.ogg").write_bytes(rendered.enrolment)
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    return rendered.opus, rendered.enrolment, meta


def evaluate(args: argparse.Namespace) -> None:  # noqa: PLR0915 -- one dialogue at a time, read top to bottom
    from bot.cli.common import load_settings
    from bot.cli.speech import recognizer_for
    from bot.cli.voice import _encoder
    from bot.logs import setup_logging
    from services.audio import decode
    from services.speech.dialogue import turns_of, voice_seconds
    from services.speech.pipeline import analyse
    from services.speech.script import rules_from
    from services.voice.analysis import analyze, enrolment_embedding, to_float
    from services.voice.flags import VoiceRules, recording_flags

    setup_logging("WARNING", "console")
    settings = load_settings()
    folder = DEFAULT_VAR / "speech_eval" / f"seed-{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines_path = out.with_suffix(".jsonl")
    done: dict[int, dict[str, Any]] = {}
    if args.resume and lines_path.exists():
        for raw in lines_path.read_text(encoding="utf-8").splitlines():
            row = json.loads(raw)
            done[row["index"]] = row
    elif lines_path.exists():
        lines_path.unlink()

    rules = rules_from(None, list(speech_eval.PRODUCTS))
    encoder = _encoder(settings, worker=True)
    voice_rules = VoiceRules.for_encoder(encoder)
    recognizer = recognizer_for(settings)
    state: dict[str, Any] = {}
    started = time.perf_counter()
    for index in range(args.n):
        if index in done:
            continue
        plan = speech_eval.plan(args.seed, index)
        opus, enrolment, meta = cached(folder, plan, state)
        wav = to_float(decode(opus))
        reference = enrolment_embedding(encoder, to_float(decode(enrolment)))[0]
        wall, cpu = time.perf_counter(), time.process_time()
        analysis = analyze(wav, encoder, reference)
        flags = recording_flags(analysis, voice_rules)
        report = analyse(
            wav,
            recognizer,
            rules,
            segments=analysis.segments,
            roles=[voice.role for voice in analysis.voices],
            flags=flags,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        roles = [voice.role for voice in analysis.voices]
        heard_seconds = voice_seconds(turns_of(analysis.segments, roles)) if analysis.segments else None
        truth = speech_eval.truth_checks(plan, meta["customer_share"], rules.criteria)
        ref_words = speech_eval.words(meta["reference"])
        row = {
            "index": index,
            "profile": plan.profile,
            "snr_db": plan.snr_db,
            "level_gap_db": plan.level_gap_db,
            "bitrate_kbps": plan.bitrate_kbps,
            "phone": plan.phone,
            "customer_voice": plan.customer_voice,
            "semitones": plan.promoter_semitones,
            "duration": round(len(wav) / fieldsim.SAMPLE_RATE, 2),
            "customer_share": round(meta["customer_share"], 3),
            "reference": meta["reference"],
            "hypothesis": report.transcript.text,
            "ref_words": len(ref_words),
            "errors": speech_eval.edit_distance(ref_words, speech_eval.words(report.transcript.text)),
            "recognition": report.transcript.confidence,
            "voices": [voice.role for voice in analysis.voices],
            "flags": [str(flag.kind) for flag in flags],
            "truth": truth,
            "checks": {check.key: check.status for check in report.checks},
            "notes": {check.key: check.note for check in report.checks if check.note},
            "truth_verdict": speech_eval.truth_verdict(truth, rules.criteria),
            "decision": report.verdict.decision,
            "leaning": report.verdict.leaning,
            "confidence": report.verdict.confidence,
            "reasons": report.verdict.reasons,
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            # what the checks and the verdict read, so that --rescore can replay them without the audio
            "lines": [
                [
                    line.start,
                    line.end,
                    line.speaker,
                    [[w.start, w.end, w.text, w.probability] for w in line.words],
                ]
                for line in report.lines
            ],
            "voice_seconds": heard_seconds,
            "flag_scores": [[str(flag.kind), float(flag.score)] for flag in flags],
        }
        done[index] = row
        with lines_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        if len(done) % 10 == 0 or index == args.n - 1:
            partial = summarise([done[i] for i in sorted(done)], rules.criteria)
            print(
                f"{len(done)}/{args.n} dialogues, {time.perf_counter() - started:.0f} s: WER {partial['wer']:.3f}, "
                f"decided {partial['decided_share']:.2f}, agreement {partial['agreement']}",
                flush=True,
            )
    summary = summarise([done[i] for i in sorted(done) if i < args.n], rules.criteria, folder)
    summary["seed"], summary["n_requested"] = args.seed, args.n
    summary["setup"] = {
        "encoder": encoder.name,
        "recognizer": getattr(recognizer, "name", type(recognizer).__name__),
        "speech_threads": settings.speech_threads,
        "beam_size": settings.speech_beam_size,
        "products": list(speech_eval.PRODUCTS),
    }
    out.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(summary, ensure_ascii=False, indent=1))


def heard_by_speaker(rows: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    """Of each speaker's words (as planned), the share the recogniser kept (aligned to the same word)."""
    kept: Counter[str] = Counter()
    said: Counter[str] = Counter()
    for row in rows:
        meta = json.loads((folder / f"{row['index']:03d}.json").read_text(encoding="utf-8"))
        speakers = [u["speaker"] for u in meta["utterances"] for _ in speech_eval.words(u["text"])]
        hits = speech_eval.aligned_hits(
            speech_eval.words(row["reference"]), speech_eval.words(row["hypothesis"])
        )
        for speaker, hit in zip(speakers, hits, strict=True):
            said[speaker] += 1
            kept[speaker] += hit
    return {
        speaker: {"words": said[speaker], "kept": round(kept[speaker] / said[speaker], 4)} for speaker in said
    }


def summarise(rows: list[dict[str, Any]], criteria: Any, folder: Path | None = None) -> dict[str, Any]:
    keys = [c.key for c in criteria]
    per: dict[str, Any] = {}
    for key in keys:
        tp = sum(r["truth"][key] and r["checks"][key] == "done" for r in rows)
        fp = sum(not r["truth"][key] and r["checks"][key] == "done" for r in rows)
        fn = sum(r["truth"][key] and r["checks"][key] != "done" for r in rows)
        per[key] = {
            "truth_done": sum(r["truth"][key] for r in rows),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "unsure": sum(r["checks"][key] == "unsure" for r in rows),
            "unsure_when_done": sum(r["truth"][key] and r["checks"][key] == "unsure" for r in rows),
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "precision_ci95": speech_eval.wilson(tp, tp + fp),
            "recall_ci95": speech_eval.wilson(tp, tp + fn),
        }
    decided = [r for r in rows if r["decision"] != "for_person"]
    agree = sum(r["decision"] == r["truth_verdict"] for r in decided)
    confusion = Counter(f"{r['truth_verdict']}->{r['decision']}" for r in rows)
    bands: dict[str, Any] = {}
    for name, low, high in (("snr<13", 0, 13), ("snr13-18", 13, 18), ("snr>=18", 18, 99)):
        band = [r for r in rows if low <= r["snr_db"] < high]
        band_decided = [r for r in band if r["decision"] != "for_person"]
        bands[name] = {
            "n": len(band),
            "wer": round(sum(r["errors"] for r in band) / max(1, sum(r["ref_words"] for r in band)), 4),
            "decided": len(band_decided),
            "agree": sum(r["decision"] == r["truth_verdict"] for r in band_decided),
        }
    audio = sum(r["duration"] for r in rows)
    reasons = Counter(
        reason.split(":")[0] for r in rows if r["decision"] == "for_person" for reason in r["reasons"]
    )
    return {
        "n": len(rows),
        "wer": round(sum(r["errors"] for r in rows) / max(1, sum(r["ref_words"] for r in rows)), 4),
        "wer_median_per_dialogue": round(
            float(np.median([r["errors"] / max(1, r["ref_words"]) for r in rows])), 4
        )
        if rows
        else None,
        "words_kept_by_speaker": heard_by_speaker(rows, folder) if folder is not None else None,
        "recognition_confidence_median": round(float(np.median([r["recognition"] for r in rows])), 3)
        if rows
        else None,
        "criteria": per,
        "truth_verdicts": dict(Counter(r["truth_verdict"] for r in rows)),
        "decisions": dict(Counter(r["decision"] for r in rows)),
        "decided": len(decided),
        "decided_share": round(len(decided) / len(rows), 4) if rows else 0.0,
        "decided_share_ci95": speech_eval.wilson(len(decided), len(rows)),
        "agreement": round(agree / len(decided), 4) if decided else None,
        "agreement_ci95": speech_eval.wilson(agree, len(decided)),
        "leaning_agreement_all": round(sum(r["leaning"] == r["truth_verdict"] for r in rows) / len(rows), 4)
        if rows
        else None,
        "confusion": dict(sorted(confusion.items())),
        "for_person_reasons": dict(reasons.most_common()),
        "flagged": sum(bool(r["flags"]) for r in rows),
        "two_voices_found": sum(len(r["voices"]) >= 2 for r in rows),
        "by_snr": bands,
        "audio_seconds": round(audio, 1),
        "x_real_time_wall": round(audio / max(1e-9, sum(r["wall_s"] for r in rows)), 2),
        "x_real_time_cpu": round(audio / max(1e-9, sum(r["cpu_s"] for r in rows)), 2),
    }


def rescore(args: argparse.Namespace) -> None:
    """The checks and the verdict again, by today's code, over the transcripts and diarisation a run
    stored (its .jsonl): for a change to script matching or the verdict rules, in seconds, not a run."""
    from dataclasses import dataclass

    from services.speech.dialogue import Line
    from services.speech.recognizer import Word
    from services.speech.script import check_script, rules_from
    from services.speech.verdict import VerdictRules, decide

    @dataclass(frozen=True)
    class Flag:
        kind: str
        score: float

    rules = rules_from(None, list(speech_eval.PRODUCTS))
    # The truth follows the same rules as the machine: a band between the shares makes "partial" contacts.
    verdict_rules = VerdictRules.from_dict(json.loads(args.verdict) if args.verdict else None)
    source = Path(args.rescore)
    rows = [json.loads(raw) for raw in source.read_text(encoding="utf-8").splitlines() if raw.strip()]
    if any("lines" not in row for row in rows):
        raise SystemExit(f"{source} was written before the transcripts were kept: run the evaluation again")
    for row in rows:
        lines = [
            Line(start, end, speaker, tuple(Word(*word) for word in words))
            for start, end, speaker, words in row["lines"]
        ]
        checks = check_script(lines, rules, row["voice_seconds"])
        verdict = decide(
            checks,
            row["recognition"],
            [Flag(kind, score) for kind, score in row["flag_scores"]],
            verdict_rules,
        )
        row["truth_verdict"] = speech_eval.truth_verdict(row["truth"], rules.criteria, verdict_rules)
        row["checks"] = {check.key: check.status for check in checks}
        row["notes"] = {check.key: check.note for check in checks if check.note}
        row.update(
            decision=verdict.decision,
            leaning=verdict.leaning,
            confidence=verdict.confidence,
            reasons=verdict.reasons,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8"
    )
    summary = summarise(rows, rules.criteria)
    summary["rescored_from"] = str(source)
    summary["verdict_rules"] = dataclasses.asdict(verdict_rules)
    out.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(summary, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--out", default=str(DEFAULT_VAR / "speech_eval" / "run.json"))
    parser.add_argument("--resume", action="store_true", help="keep the results already in --out's .jsonl")
    parser.add_argument(
        "--rescore",
        metavar="JSONL",
        help="no audio: replay the checks and the verdict over a run's stored transcripts, summary to --out",
    )
    parser.add_argument(
        "--verdict",
        metavar="JSON",
        help="with --rescore: the verdict's rules for the machine and the truth alike, e.g. '{\"approve_share\": "
        '0.75, "reject_share": 0.35}\' (the band the defaults had before 2026-12-07); default: the defaults',
    )
    arguments = parser.parse_args()
    if arguments.rescore:
        if Path(arguments.rescore).resolve() == Path(arguments.out).with_suffix(".jsonl").resolve():
            parser.error("--out must differ from the run being rescored")
        rescore(arguments)
    else:
        evaluate(arguments)
