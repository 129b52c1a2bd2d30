"""How much listening the `cut_pauses` option saves reviewers (services.pauses), over a folder of voice notes:
each note's speech turns as the voice analysis' silero-vad finds them, the note with its long pauses cut,
and the seconds before and after; a note saved less than MIN_SAVED keeps its original (as the worker does).

    .venv/bin/python bench/pauses_bench.py var/speech_eval/seed-25 [--glob '[0-9][0-9][0-9].ogg']
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services import pauses
from services.audio import SAMPLE_RATE, decode
from services.voice.analysis import speech_spans, to_float


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--glob", default="[0-9][0-9][0-9].ogg")
    args = parser.parse_args()
    files = sorted(args.folder.glob(args.glob))
    if not files:
        raise SystemExit(f"no notes matching {args.glob} in {args.folder}")
    before = after = 0.0
    shortened = 0
    started = time.perf_counter()
    for number, path in enumerate(files, 1):
        wav = to_float(decode(path.read_bytes()))
        turns = [(start, end, 0) for start, end in speech_spans(wav)]
        seconds = len(wav) / SAMPLE_RATE
        short = len(pauses.shorten_pauses(wav, turns)) / SAMPLE_RATE
        before += seconds
        if seconds - short >= pauses.MIN_SAVED:
            shortened += 1
            after += short
        else:
            after += seconds
        if number % 50 == 0 or number == len(files):
            print(f"{number}/{len(files)} notes, {time.perf_counter() - started:.0f} s", flush=True)
    print(
        f"notes: {len(files)}; shortened (saving >= {pauses.MIN_SAVED:.0f} s): {shortened}; "
        f"listening {before:.0f} s -> {after:.0f} s (x{after / before:.3f}); "
        f"pauses over {pauses.MAX_PAUSE} s cut to {pauses.KEPT_PAUSE} s"
    )


if __name__ == "__main__":
    main()
