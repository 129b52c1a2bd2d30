"""Reviewer-minutes per 1,000 contacts with routing off and on, on the same evaluation set (issue #25).

Reads the per-dialogue results of bench/speech_eval.py (its --out's .jsonl: one line per synthesised Russian
promoter-customer dialogue passed through the field simulation and the production pipeline) and routes each
contact with the production policy, services.speech.routing.route, under a project's default routing rules
(audit share 10%, the verdict's own confidence bar). Nothing is re-run or fitted here.

- Routing off: every contact goes to a reviewer (what Fieldcheck did before issue #25).
- Routing on: a reviewer gets only what route() sends to a person (voice flags, uncertain verdicts, a failed
  critical check, the audit share); the rest is decided by the machine.

A reviewer's time per contact is the model services.capacity uses when nothing is measured: the whole
recording listened to once, plus capacity.OVERHEAD_MINUTES (form, marks, comment). That model is an
assumption, the same for both arms; the ratio between the arms is what the routing changes. The promoters are
taken as settled (past their first contacts), so the new-promoter rule sends nothing here: say so beside the
figure. Each contact's id is its index + 1, which fixes the (deterministic) audit sample.

    .venv/bin/python bench/reviewer_minutes.py [--rows var/speech_eval/run.jsonl] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infra.settings import DEFAULT_VAR
from services.capacity import OVERHEAD_MINUTES
from services.speech.routing import RoutingRules
from voicelab.reviewer_minutes import measure


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default=str(DEFAULT_VAR / "speech_eval" / "run.jsonl"))
    parser.add_argument("--audit-share", type=float, default=RoutingRules().audit_share)
    parser.add_argument("--overhead-minutes", type=float, default=OVERHEAD_MINUTES)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    path = Path(args.rows)
    if not path.exists():
        raise SystemExit(f"{path} not found: run bench/speech_eval.py first (its --out's .jsonl)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{path} holds no results")
    found = measure(rows, args.audit_share, args.overhead_minutes)
    if args.json:
        print(json.dumps(found, ensure_ascii=False, indent=1))
        return
    on, off = found["routing_on"], found["routing_off"]
    print(f"data: {found['data']}")
    print(
        f"{found['contacts']} contacts, recordings {found['mean_recording_seconds']} s on average; a reviewer's "
        f"contact = its recording + {found['overhead_minutes']} min (services.capacity's model)"
    )
    print(
        f"routing off: {off['to_people']} to people, {off['reviewer_minutes_per_1000']} reviewer-minutes per 1,000"
    )
    print(
        f"routing on:  {on['to_people']} to people, {on['decided_automatically']} decided automatically "
        f"({on['automatic_wrong_against_truth']} against the truth), {on['reviewer_minutes_per_1000']} "
        f"reviewer-minutes per 1,000 (x{found['ratio_on_to_off']} of off)"
    )
    print(f"why to people: {on['why_to_people']}")
    one = found["one_minute_notes"]
    print(
        f"one-minute notes, same shares: {one['routing_off_minutes_per_1000']} -> "
        f"{one['routing_on_minutes_per_1000']} reviewer-minutes per 1,000"
    )


if __name__ == "__main__":
    main()
