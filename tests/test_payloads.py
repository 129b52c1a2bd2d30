"""The typed payloads read the JSON rows already stored (shapes written before they were typed) and write
them back unchanged, so no data migration was needed (issue #28 item 4)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from models import AlertKind, FlagKind, ManagerAlert, VoiceFlag
from models.payloads import (
    AnalysisEvidence,
    ClientDetractor,
    DigestFigures,
    Fraud,
    RepeatedCustomer,
    SelfRecording,
    SurveySameRespondent,
    alert_details,
    flag_details,
)

FLAG_ROWS: list[tuple[FlagKind, dict[str, Any]]] = [
    (FlagKind.LOW_SPEECH, {"speech_seconds": 2.5}),
    (
        FlagKind.NO_CUSTOMER,
        {"confidence": "likely", "calibrated": True, "why": {"speech": 58.0, "voices": 1.0, "second": 2.0}},
    ),
    (FlagKind.CUSTOMER_IS_OTHER_PROMOTER, {"promoter_user_id": 7}),
    (FlagKind.REPEATED_CUSTOMER, {"cluster": "c12", "normalised": True}),
    (FlagKind.DUPLICATE_RECORDING, {"method": "sha256"}),
    (FlagKind.SURVEY_SAME_RESPONDENT, {"tried": None}),
    (FlagKind.SURVEY_FAST_ANSWER, {"seconds": 3.0}),
    (FlagKind.SURVEY_FRESH_ACCOUNTS, {"fresh": 5, "answers": 6, "expected": 0.1}),
]


@pytest.mark.parametrize(("kind", "stored"), FLAG_ROWS)
def test_a_stored_flag_reads_as_its_kinds_payload_and_writes_back_the_same(
    kind: FlagKind, stored: dict[str, Any]
) -> None:
    details = flag_details(kind, stored)
    assert details.kind == kind
    flag = VoiceFlag(contact_id=1, score=1.0, details=details)
    assert flag.kind == kind and flag.stored_details == stored


def test_older_flag_rows_without_the_newer_keys_still_read() -> None:
    """Self-recording flags raised before they said how sure they were: the card's plain line."""
    details = flag_details(FlagKind.CUSTOMER_IS_PROMOTER, {})
    assert details == SelfRecording(kind=FlagKind.CUSTOMER_IS_PROMOTER, confidence=None)
    assert flag_details(FlagKind.REPEATED_CUSTOMER, {}) == RepeatedCustomer()
    assert flag_details(FlagKind.SURVEY_SAME_RESPONDENT, {"tried": True}) == SurveySameRespondent(tried=True)


def test_alert_details_read_by_the_alerts_kind() -> None:
    stored = {
        "score": 2,
        "scale": "0-10",
        "verbatim": None,
        "client": "Olga",
        "client_telegram_id": 42,
        "client_survey_id": 3,
    }
    details = alert_details(AlertKind.CLIENT_DETRACTOR, stored)
    assert isinstance(details, ClientDetractor) and details.client_telegram_id == 42
    alert = ManagerAlert(project_id=1, details=details)
    assert alert.kind == AlertKind.CLIENT_DETRACTOR and alert.stored_details == stored
    fraud = alert_details(AlertKind.FRAUD, {"promoter": "Pavel", "comment": "—"})
    assert fraud == Fraud(promoter="Pavel", comment="—")


def test_digest_figures_of_an_older_shape_read_as_missing_parts() -> None:
    """A day logged in an older shape is computed again, as before: its `today` reads as missing."""
    stored = {
        "day": "2026-11-30",
        "late": False,
        "today": {"received": 2, "reviewed": 1, "no_longer_a_figure": 3},
        "promoters": {"5": [3, 2]},
    }
    figures = DigestFigures.model_validate(stored)
    assert figures.day == dt.date(2026, 11, 30)
    assert figures.today is None
    assert figures.promoters == {5: (3, 2)}
    assert figures.model_dump(mode="json")["promoters"] == {"5": [3, 2]}
    assert DigestFigures.model_validate({"promoters": "garbled"}).promoters is None


def test_digest_figures_keep_capacity_and_rows_before_it_load_without() -> None:
    """Capacity (issue #25 item 6) is kept as services.capacity.Capacity has it; older rows have none."""
    from dataclasses import asdict, fields

    from models.payloads import LoggedCapacity
    from services.capacity import Capacity

    assert [f.name for f in fields(Capacity)] == list(LoggedCapacity.model_fields)
    before = {"day": "2026-11-30", "today": {"received": 2}, "reviewers": [["Rita", 3]]}
    assert DigestFigures.model_validate(before).capacity is None
    assert DigestFigures.model_validate({**before, "capacity": {"waiting": "many"}}).capacity is None
    kept = Capacity(automatic=3, to_people=4, decided_by_people=2, waiting=3, queue_hours=0.3)
    figures = DigestFigures(capacity=LoggedCapacity(**asdict(kept)))
    again = DigestFigures.model_validate(figures.model_dump(mode="json"))
    assert again.capacity is not None and Capacity(**again.capacity.model_dump()) == kept


def test_analysis_evidence_reads_rows_of_every_age() -> None:
    assert AnalysisEvidence.model_validate({"backend": "resemblyzer", "features": {}}).voice_seconds == []
    full = {
        "backend": "campplus",
        "enrolled": True,
        "features": {"gap_z": 1.5},
        "p_one_voice": 0.2,
        "p_self_recorded": 0.1,
        "calibrated": True,
        "speech_seconds": 40.0,
        "voices": 2,
        "voice_seconds": [{"role": "promoter", "seconds": 30.0}, {"role": "customer", "seconds": 10.0}],
        "overlap_seconds": 1.0,
        "segments": [[0.0, 2.5, "promoter"]],
        "shortened": {"key": "ab/cd/abcd.pauses-cut.ogg", "seconds": 31.0, "original_seconds": 45.5},
    }
    assert AnalysisEvidence.model_validate(full).model_dump(mode="json") == full
    before_pauses_cut = {k: v for k, v in full.items() if k != "shortened"}
    assert AnalysisEvidence.model_validate(before_pauses_cut).shortened is None


def test_digest_figures_keep_the_audit_and_rows_before_it_load_without() -> None:
    """The audit block (issue #25 item 4) is kept; rows written before it, or garbled, read as none."""
    from models.payloads import LoggedAudit, LoggedCriterionAudit

    before = {"day": "2026-11-30", "today": {"received": 2}}
    assert DigestFigures.model_validate(before).audit is None
    assert DigestFigures.model_validate({**before, "audit": {"pairs": "many"}}).audit is None
    audit = LoggedAudit(
        days=30,
        bar=0.9,
        min_pairs=20,
        pairs=25,
        agreement=0.88,
        kappa=0.7,
        criteria=[LoggedCriterionAudit(key="offer", pairs=25, agreement=0.8, returned=True)],
        returned=["offer"],
    )
    again = DigestFigures.model_validate(DigestFigures(audit=audit).model_dump(mode="json"))
    assert again.audit == audit and again.audit.precision is None
