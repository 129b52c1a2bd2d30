"""How well an encoder's short windows tell voices apart on one phone in one shop, in three minutes rather
than the full field evaluation's half hour: the quick test for a new encoder, window length or back-end
(issue #9; docs/decisions.md lists what was tried with it).

On the dev split of the field-realistic set (bench/field_eval.py builds it under var/fieldset/), prints
  - pair AUC: inside each genuine dialogue, how well the cosine of two windows separates "same speaker"
    from "different speakers" (windows at least 60% one speaker's speech, ground truth from the RTTM turns);
  - split AUC: how well the two-part split's gap (analysis.split_evidence's gap_z) separates genuine
    dialogues from plain and from disguised monologues.
Longer windows score a higher pair AUC on their own (fewer, purer windows): compare encoders at one length.

    .venv/bin/python bench/window_probe.py [--backend resemblyzer] [--window 0.8] [--hop 0.3]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np

from infra.settings import PROJECT_ROOT
from services.voice.analysis import _split, _window_starts, speech_spans, split_evidence
from services.voice.encoder import SAMPLE_RATE, load_encoder
from voicelab import field_eval

warnings.filterwarnings("ignore")
DEV = PROJECT_ROOT / "var" / "fieldset" / "dev"


def window_speakers(turns: list[dict[str, Any]], starts: np.ndarray, size: int) -> list[str | None]:
    """The one speaker of each window, or None where it is mostly silence or two people."""
    out: list[str | None] = []
    for start in starts:
        a, b = start / SAMPLE_RATE, (start + size) / SAMPLE_RATE
        cover: dict[str, float] = {}
        for turn in turns:
            overlap = min(b, turn["end"]) - max(a, turn["start"])
            if overlap > 0:
                cover[turn["speaker"]] = cover.get(turn["speaker"], 0.0) + overlap
        pure = cover and max(cover.values()) / (b - a) >= 0.6 and sum(v > 0.1 for v in cover.values()) == 1
        out.append(max(cover, key=lambda k: cover[k]) if pure else None)
    return out


def main(args: argparse.Namespace) -> None:
    from sklearn.metrics import roc_auc_score

    if not DEV.is_dir():
        raise SystemExit(f"{DEV} is missing: run bench/field_eval.py once to build the field-realistic sets")
    encoder = load_encoder(args.backend)
    size, hop = int(args.window * SAMPLE_RATE), int(args.hop * SAMPLE_RATE)
    pair_aucs: list[float] = []
    gaps: list[tuple[str, float]] = []
    audio, started = 0.0, time.perf_counter()
    for meta_path in sorted(DEV.glob("dev-*.json")):
        meta = json.loads(meta_path.read_text())
        wav = field_eval._load(meta_path.with_suffix(".ogg"))
        audio += len(wav) / SAMPLE_RATE
        starts = _window_starts(speech_spans(wav), size, hop, len(wav))
        if len(starts) < 6:
            continue
        embeddings = encoder.embed_windows(wav, starts, size)
        if meta["kind"] == "dialogue":
            speakers = window_speakers(meta["turns"], starts, size)
            keep = [i for i, s in enumerate(speakers) if s is not None]
            labels = np.array([speakers[i] for i in keep])
            if len(set(labels)) == 2:
                sims = embeddings[keep] @ embeddings[keep].T
                upper = np.triu_indices(len(keep), 1)
                pair_aucs.append(roc_auc_score((labels[:, None] == labels[None, :])[upper], sims[upper]))
        parts = _split(embeddings, 2)
        gaps.append((meta["kind"], split_evidence(embeddings, parts, args.hop, starts, hop)["gap_z"]))
    spent = time.perf_counter() - started
    print(f"{encoder.name}, {args.window} s windows every {args.hop} s, dev split ({len(gaps)} recordings)")
    print(f"  pair AUC inside dialogues: mean {np.mean(pair_aucs):.3f} over {len(pair_aucs)} dialogues")
    for kind, name in (("monologue", "plain monologues"), ("disguised", "disguised monologues")):
        rows = [(k, g) for k, g in gaps if k in ("dialogue", kind)]
        auc = roc_auc_score([k == "dialogue" for k, _ in rows], [g for _, g in rows])
        print(f"  split AUC, dialogues against {name}: {auc:.3f}")
    print(f"  {audio / spent:.0f}x real time (decode, VAD, windows, split)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="resemblyzer")
    parser.add_argument("--window", type=float, default=0.8)
    parser.add_argument("--hop", type=float, default=0.3)
    main(parser.parse_args())
