"""The field-realistic evaluation: build a set of recordings, run the real analysis on them, score it.

`build` writes, per recording, the Opus voice note exactly as Telegram would deliver it (`.ogg`), its
ground truth (`.rttm`) and its conditions (`.json`), plus each promoter's enrolment note. Speakers are split
once and for all: promoters from LibriSpeech test-other (5 for fitting, 5 held out), customers from
train-clean-100 (fit / held-out / a third group only ever heard as background babble).

`score` runs `services.voice.analysis.analyze` on every note (decoded the production way) and reports voice
counting, DER and JER (pyannote.metrics, 0.25 s collar), the self-recording judgement's false alarms on
genuine dialogues and its catches on monologues (plain and disguised apart), per condition, and how well
the probabilities are calibrated. `fit` turns a scored set into a Calibration.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.audio import decode
from services.voice.analysis import analyze, enrolment_embedding, to_float
from services.voice.index import COHORT_TOP, cohort_stats, snorm
from services.voice.probability import Calibration, Logistic, features_for

SURE = 0.9  # at or above: the flag is stated as likely
LISTEN = 0.5  # at or above (and below SURE): "listen carefully", never an accusation


@dataclass(frozen=True)
class Split:
    promoters: list[str]
    customers: list[str]
    babble: list[str]


def speaker_splits(shared: Path) -> dict[str, Split]:
    """Fixed, reproducible speaker groups: nobody in `test` is heard while fitting."""
    other = sorted(p.name for p in (shared / "librispeech-test-other").iterdir() if p.is_dir())
    train = sorted({f.stem.split("-")[0] for f in (shared / "librispeech-train-clean-100").glob("*.flac")})
    rng = random.Random(2026)
    rng.shuffle(other)
    rng.shuffle(train)
    third = len(train) // 5
    return {
        "dev": Split(other[:5], train[: 2 * third], train[4 * third :]),
        "test": Split(other[5:], train[2 * third : 4 * third], train[4 * third :]),
    }


def _build_one(job: dict[str, Any]) -> str:
    """Worker process: simulate one recording and write its files (imports stay inside: spawn-safe)."""
    from voicelab import fieldsim  # noqa: PLC0415  scipy: only the simulated audio needs it

    state = _state(job["shared"], job["split"])
    rng = random.Random(job["seed"])
    record = fieldsim.simulate(
        rng,
        job["kind"],
        job["promoter"],
        job["customer"],
        bank=state["bank"],
        rooms=state["rooms"],
        babble=state["babble"],
        max_seconds=job["seconds"],
    )
    out = Path(job["out"])
    uri = job["uri"]
    (out / f"{uri}.ogg").write_bytes(record.opus)
    (out / f"{uri}.rttm").write_text(record.rttm(uri))
    (out / f"{uri}.json").write_text(json.dumps(record.meta()))
    return str(uri)


_STATE: dict[tuple[str, str], dict[str, Any]] = {}


def _load(path: Path) -> np.ndarray:
    return to_float(decode(path.read_bytes()))


def _state(shared: str, split_name: str) -> dict[str, Any]:
    """Speech banks and rooms, built once per worker process."""
    key = (shared, split_name)
    if key not in _STATE:
        from voicelab import fieldsim  # noqa: PLC0415  scipy: only the simulated audio needs it

        folder = Path(shared)
        split = speaker_splits(folder)[split_name]
        other = fieldsim.load_bank(folder / "librispeech-test-other", split.promoters, _load)
        train = fieldsim.load_bank(
            folder / "librispeech-train-clean-100", split.customers + split.babble, _load
        )
        held = {}
        for promoter, utterances in other.speakers.items():
            # One utterance per promoter is their enrolment and is never heard in a contact.
            held[promoter] = utterances.pop(random.Random(f"enrol-{promoter}").randrange(len(utterances)))
        bank = fieldsim.SpeechBank({**other.speakers, **train.speakers})
        babble = [u for s in split.babble for u in train.speakers.get(s, [])]
        rooms = fieldsim.Rooms(random.Random(f"rooms-{split_name}"), 24)
        _STATE[key] = {"bank": bank, "babble": babble, "rooms": rooms, "split": split, "held": held}
    return _STATE[key]


def build(
    shared: Path,
    out: Path,
    split_name: str,
    *,
    dialogues: int,
    monologues: int,
    disguised: int,
    seed: int = 1,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a field-realistic set; recordings already there are kept (a build can be resumed)."""
    from voicelab import fieldsim  # noqa: PLC0415  scipy: only the simulated audio needs it

    out.mkdir(parents=True, exist_ok=True)
    split = speaker_splits(shared)[split_name]
    rng = random.Random(seed)
    state = _state(str(shared), split_name)
    enrol_rng = random.Random(seed + 1)
    for promoter in split.promoters:
        path = out / f"enrol-{promoter}.ogg"
        if not path.exists():
            path.write_bytes(fieldsim.opus_bytes(fieldsim.enrolment(enrol_rng, state["held"][promoter]), 24))
    jobs: list[dict[str, Any]] = []
    plan = [("dialogue", dialogues), ("monologue", monologues), ("disguised", disguised)]
    for kind, count in plan:
        for index in range(count):
            promoter = rng.choice(split.promoters)
            customer = rng.choice(split.customers) if kind == "dialogue" else None
            job_seed, seconds = rng.randrange(1 << 30), rng.uniform(20.0, 60.0)
            uri = f"{split_name}-{kind}-{index:04d}"
            if (out / f"{uri}.json").exists():
                continue  # drawn all the same, so a resumed build makes the same recordings
            jobs.append(
                {
                    "shared": str(shared),
                    "split": split_name,
                    "kind": kind,
                    "promoter": promoter,
                    "customer": customer,
                    "seed": job_seed,
                    "seconds": seconds,
                    "out": str(out),
                    "uri": uri,
                }
            )
    total = len(jobs)
    if workers <= 1:
        for done, job in enumerate(jobs, 1):
            _build_one(job)
            if progress:
                progress(done, total)
    else:
        with ProcessPoolExecutor(workers) as pool:
            for done, _ in enumerate(pool.map(_build_one, jobs), 1):
                if progress:
                    progress(done, total)
    return out


@dataclass
class Scored:
    uri: str
    kind: str
    condition: dict[str, Any]
    evidence: dict[str, float]
    voices: int
    true_voices: int
    p_one_voice: float | None
    p_self_recorded: float | None
    der: float
    jer: float
    seconds: float
    analysis_seconds: float


def score_set(
    folder: Path,
    encoder: Any,
    calibration: Calibration | None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Scored]:
    """Analyse every recording of a set the production way and compare with its ground truth."""
    from pyannote.core import Annotation, Segment  # noqa: PLC0415  pyannote.metrics: heavy, evaluation only
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate  # noqa: PLC0415  pyannote.metrics: heavy, evaluation only

    metas = sorted(folder.glob("*.json"))
    enrolments: dict[str, np.ndarray] = {}
    results: list[Scored] = []
    for done, meta_path in enumerate(metas, 1):
        meta = json.loads(meta_path.read_text())
        uri = meta_path.stem
        promoter = meta["promoter"]
        if promoter not in enrolments:
            enrolments[promoter] = enrolment_embedding(encoder, _load(folder / f"enrol-{promoter}.ogg"))[0]
        wav = _load(folder / f"{uri}.ogg")
        started = time.perf_counter()
        analysis = analyze(wav, encoder, enrolments[promoter], calibration)
        spent = time.perf_counter() - started
        reference, hypothesis = Annotation(uri=uri), Annotation(uri=uri)
        for turn in meta["turns"]:
            reference[Segment(turn["start"], turn["end"])] = turn["speaker"]
        for start, end, voice in analysis.segments:
            hypothesis[Segment(start, end)] = f"v{voice}"
        der = DiarizationErrorRate(collar=0.25)(reference, hypothesis)
        jer = JaccardErrorRate(collar=0.25)(reference, hypothesis)  # type: ignore[no-untyped-call]
        true_voices = len({t["speaker"] for t in meta["turns"]})
        results.append(
            Scored(
                uri,
                meta["kind"],
                meta["condition"],
                analysis.evidence,
                len(analysis.voices),
                true_voices,
                analysis.p_one_voice,
                analysis.p_self_recorded,
                float(der),
                float(jer),
                len(wav) / 16_000,
                spent,
            )
        )
        if progress:
            progress(done, len(metas))
    return results


def fit(rows: list[Scored], backend: str, source: str) -> Calibration:
    """P(one voice): dialogues against plain monologues. P(self-recorded): dialogues against monologues,
    disguised ones included."""
    usable = [r for r in rows if r.evidence]
    one_features, self_features = features_for(usable[0].evidence)
    one = [r for r in usable if r.kind in ("dialogue", "monologue")]
    one_voice = Logistic.fit(one_features, [r.evidence for r in one], [r.kind != "dialogue" for r in one])
    self_recorded = Logistic.fit(
        self_features, [r.evidence for r in usable], [r.kind != "dialogue" for r in usable]
    )
    return Calibration(backend, one_voice, self_recorded, source)


def _rate(hits: int, total: int) -> str:
    return f"{hits}/{total} ({hits / total:.1%})" if total else "n/a"


def _bins(rows: list[Scored], key: str, edges: list[float]) -> Iterable[tuple[str, list[Scored]]]:
    for low, high in itertools.pairwise(edges):
        yield f"{key} {low:g}-{high:g}", [r for r in rows if low <= r.condition[key] < high]


def report(rows: list[Scored], *, sure: float = SURE, listen: float = LISTEN) -> dict[str, Any]:
    """The figures issue #9 asks for, as a dict (the CLI prints it, the benchmark writes it down)."""
    dialogues = [r for r in rows if r.kind == "dialogue"]
    plain = [r for r in rows if r.kind == "monologue"]
    disguised = [r for r in rows if r.kind == "disguised"]
    counted = [r for r in dialogues + plain if r.p_one_voice is not None]

    def flagged(r: Scored, level: float) -> bool:
        return r.p_self_recorded is not None and r.p_self_recorded >= level

    def judged(subset: list[Scored]) -> dict[str, Any]:
        return {
            "count": len(subset),
            "voices_right": _rate(
                sum(r.voices == (1 if r.kind != "dialogue" else 2) for r in subset), len(subset)
            ),
            "der": round(float(np.mean([r.der for r in subset])), 3) if subset else None,
            "jer": round(float(np.mean([r.jer for r in subset])), 3) if subset else None,
            "flagged_sure": _rate(sum(flagged(r, sure) for r in subset), len(subset)),
            "flagged_any": _rate(sum(flagged(r, listen) for r in subset), len(subset)),
        }

    conditions: dict[str, Any] = {}
    for name, subset in [
        *_bins(dialogues, "snr_db", [5, 10, 15, 20.1]),
        *_bins(dialogues, "level_gap_db", [6, 8, 10, 12.1]),
        *_bins(dialogues, "overlap", [0, 0.05, 0.1, 1.0]),
    ]:
        conditions[f"dialogues, {name}"] = judged(subset)
    for name, subset in _bins(plain + disguised, "snr_db", [5, 10, 15, 20.1]):
        conditions[f"monologues, {name}"] = judged(subset)
    speech = sum(r.seconds for r in rows)
    spent = sum(r.analysis_seconds for r in rows)
    probabilities = [(r.p_self_recorded, r.kind != "dialogue") for r in rows if r.p_self_recorded is not None]
    reliability = []
    for low, high in ((0, 0.1), (0.1, 0.5), (0.5, 0.9), (0.9, 1.01)):
        members = [truth for p, truth in probabilities if low <= p < high]
        if members:
            reliability.append(
                {
                    "p": f"{low:g}-{min(high, 1):g}",
                    "n": len(members),
                    "self_recorded": f"{np.mean(members):.0%}",
                }
            )
    return {
        "recordings": len(rows),
        "voices_counted_right": _rate(sum(r.voices == r.true_voices for r in counted), len(counted)),
        "der_dialogues": round(float(np.mean([r.der for r in dialogues])), 3) if dialogues else None,
        "jer_dialogues": round(float(np.mean([r.jer for r in dialogues])), 3) if dialogues else None,
        "der_all": round(float(np.mean([r.der for r in dialogues + plain])), 3) if rows else None,
        "genuine_flagged_sure": _rate(sum(flagged(r, sure) for r in dialogues), len(dialogues)),
        "genuine_flagged_listen": _rate(sum(flagged(r, listen) for r in dialogues), len(dialogues)),
        "monologues_caught": _rate(sum(flagged(r, listen) for r in plain), len(plain)),
        "monologues_caught_sure": _rate(sum(flagged(r, sure) for r in plain), len(plain)),
        "disguised_caught": _rate(sum(flagged(r, listen) for r in disguised), len(disguised)),
        "disguised_caught_sure": _rate(sum(flagged(r, sure) for r in disguised), len(disguised)),
        "dialogues": judged(dialogues),
        "monologues": judged(plain),
        "disguised": judged(disguised),
        "by_condition": conditions,
        "reliability": reliability,
        "real_time_factor": round(speech / spent, 1) if spent else None,
    }


# Repeated customers: the same customer voice in several contacts, each through another phone in another
# shop. Customers from the split's own speakers: test-other speakers cut into ~4 s pieces come back in many
# contacts (the fraud pattern), train-clean speakers in two or three (a returning customer: not a flag at
# the default of 2 other contacts when there are only two).
REPEAT_PIECE = (3.0, 5.0)


def _customer_pieces(rng: random.Random, state: dict[str, Any], split: Split) -> dict[str, list[np.ndarray]]:
    """Virtual speakers `<speaker>#<n>`, one short piece of speech each, no audio used twice."""
    pieces: dict[str, list[np.ndarray]] = {}
    other = sorted(s for s in split.promoters)
    for speaker in other:  # these speak as customers here, never as promoters
        audio = np.concatenate(state["bank"].speakers[speaker])
        at, n = 0, 0
        while n < 18:
            size = int(rng.uniform(*REPEAT_PIECE) * 16_000)
            if at + size > len(audio):
                break
            pieces[f"{speaker}#{n}"] = [audio[at : at + size]]
            at, n = at + size, n + 1
    for index, speaker in enumerate(sorted(split.customers)[:100]):
        audio = np.concatenate(state["bank"].speakers[speaker])
        parts = 3 if index < 34 else 2
        size = min(int(rng.uniform(*REPEAT_PIECE) * 16_000), len(audio) // parts)
        for n in range(parts):
            pieces[f"{speaker}#{n}"] = [audio[n * size : (n + 1) * size]]
    return pieces


def _build_repeat(job: dict[str, Any]) -> str:
    from voicelab import fieldsim  # noqa: PLC0415  scipy: only the simulated audio needs it

    state = _state(job["shared"], job["split"])
    rng = random.Random(job["seed"])
    if "pieces" not in state:
        state["pieces"] = _customer_pieces(random.Random(f"pieces-{job['split']}"), state, state["split"])
        state["promoter_bank"] = _state(job["shared"], job["promoters_from"])["bank"]
    bank = fieldsim.SpeechBank(
        {
            job["promoter"]: state["promoter_bank"].speakers[job["promoter"]],
            job["customer"]: state["pieces"][job["customer"]],
        }
    )
    record = fieldsim.simulate(
        rng,
        "dialogue",
        job["promoter"],
        job["customer"],
        bank=bank,
        rooms=state["rooms"],
        babble=state["babble"],
        max_seconds=job["seconds"],
    )
    out = Path(job["out"])
    (out / f"{job['uri']}.ogg").write_bytes(record.opus)
    (out / f"{job['uri']}.json").write_text(json.dumps(record.meta()))
    return str(job["uri"])


def build_repeats(
    shared: Path,
    out: Path,
    split_name: str,
    *,
    seed: int = 5,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Contacts for the repeated-customer check. Promoters come from the other split: here they only
    surround the customer's speech, and the split's own test-other speakers play customers."""
    out.mkdir(parents=True, exist_ok=True)
    state = _state(str(shared), split_name)
    promoters_from = "dev" if split_name == "test" else "test"
    promoters = speaker_splits(shared)[promoters_from].promoters
    pieces = _customer_pieces(random.Random(f"pieces-{split_name}"), state, state["split"])
    rng = random.Random(seed)
    jobs = []
    for index, customer in enumerate(sorted(pieces)):
        job_seed, promoter, seconds = rng.randrange(1 << 30), rng.choice(promoters), rng.uniform(15.0, 30.0)
        uri = f"{split_name}-repeat-{index:04d}"
        if (out / f"{uri}.json").exists():
            continue
        jobs.append(
            {
                "shared": str(shared),
                "split": split_name,
                "promoters_from": promoters_from,
                "promoter": promoter,
                "customer": customer,
                "seed": job_seed,
                "seconds": seconds,
                "out": str(out),
                "uri": uri,
            }
        )
    with ProcessPoolExecutor(workers) as pool:
        for done, _ in enumerate(pool.map(_build_repeat, jobs), 1):
            if progress:
                progress(done, len(jobs))
    return out


@dataclass
class RepeatPrint:
    uri: str
    customer: str  # the real speaker (the part before '#')
    vector: np.ndarray | None  # the customer voice the analysis found; None: it found no customer


def repeat_prints(
    folder: Path, encoder: Any, progress: Callable[[int, int], None] | None = None
) -> list[RepeatPrint]:
    """The customer voiceprint of each contact, found by the real analysis (with no enrolment: the voice that
    speaks less is the customer, as for a promoter who has not enrolled)."""
    metas = sorted(folder.glob("*-repeat-*.json"))
    prints = []
    for done, meta_path in enumerate(metas, 1):
        meta = json.loads(meta_path.read_text())
        analysis = analyze(_load(folder / f"{meta_path.stem}.ogg"), encoder)
        customers = analysis.customers
        vector = max(customers, key=lambda v: v.speech_seconds).embedding if customers else None
        prints.append(RepeatPrint(meta_path.stem, str(meta["customer"]).split("#")[0], vector))
        if progress:
            progress(done, len(metas))
    return prints


def repeat_scores(prints: list[RepeatPrint]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[RepeatPrint]]:
    """Raw cosine and adaptive s-norm matrices over the contacts whose customer was found (the others are
    the cohort too), and the truth."""
    found = [p for p in prints if p.vector is not None]
    vectors = np.stack([p.vector for p in found if p.vector is not None])
    raw = vectors @ vectors.T
    stats = []
    for i in range(len(found)):
        others = np.delete(raw[i], i)
        stats.append(cohort_stats(list(others), COHORT_TOP))
    norm = np.zeros_like(raw)
    for i in range(len(found)):
        for j in range(len(found)):
            norm[i, j] = snorm(float(raw[i, j]), stats[i], stats[j]) if i != j else 0.0
    truth = np.array([[a.customer == b.customer for b in found] for a in found])
    return raw, norm, truth, found


def repeat_report(
    prints: list[RepeatPrint], *, raw_threshold: float, snorm_threshold: float, min_contacts: int = 2
) -> dict[str, Any]:
    """Pairwise precision/recall of "same customer", and the flag (customer in >= min_contacts others)."""
    raw, norm, truth, found = repeat_scores(prints)
    upper = np.triu_indices(len(found), 1)
    sizes: dict[str, int] = {}
    for p in prints:
        sizes[p.customer] = sizes.get(p.customer, 0) + 1

    def judged(matrix: np.ndarray, threshold: float) -> dict[str, Any]:
        predicted = matrix >= threshold
        tp = int((predicted & truth)[upper].sum())
        fp = int((predicted & ~truth)[upper].sum())
        fn = int((~predicted & truth)[upper].sum())
        flagged = predicted.sum(axis=1) - 0 >= min_contacts
        should = np.array([sizes[p.customer] - 1 >= min_contacts for p in found])
        all_should = sum(1 for p in prints if sizes[p.customer] - 1 >= min_contacts)
        confirmed = int((flagged & should).sum())
        return {
            "pairs_precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "pairs_recall": round(tp / (tp + fn), 3) if tp + fn else None,
            "flag_precision": round(confirmed / int(flagged.sum()), 3) if flagged.sum() else None,
            "flag_recall": round(confirmed / all_should, 3) if all_should else None,
            "flagged": int(flagged.sum()),
            "should_flag": all_should,
        }

    return {
        "contacts": len(prints),
        "customer_found": len(found),
        "raw": {"threshold": raw_threshold, **judged(raw, raw_threshold)},
        "snorm": {"threshold": snorm_threshold, **judged(norm, snorm_threshold)},
    }


def fit_repeat_threshold(prints: list[RepeatPrint], precision: float = 0.95) -> tuple[float, float]:
    """The lowest raw and s-norm thresholds whose pairwise precision on these contacts reaches `precision`
    (fitted on the dev split, reported on the held-out one)."""
    raw, norm, truth, found = repeat_scores(prints)
    upper = np.triu_indices(len(found), 1)
    out = []
    for matrix in (raw, norm):
        scores, labels = matrix[upper], truth[upper]
        best = float(scores.max())
        for threshold in np.sort(np.unique(np.round(scores, 3)))[::-1]:
            predicted = scores >= threshold
            if predicted.sum() and labels[predicted].mean() >= precision:
                best = float(threshold)
            elif predicted.sum() > 20:
                break
        out.append(best)
    return out[0], out[1]
