"""Fraud flags for one analysed contact, against the voiceprints already stored for its project.

1 no customer voice; 2 a customer voice is the promoter's own; 3 the customer's voice is a customer in
>= K other contacts in the window; 4 the customer is another promoter; 5 resent / near-duplicate recording;
6 too little speech. Each flag carries a score and the contacts it matches.

Flags 1 and 2 accuse the promoter of recording themselves, so they say how sure they are: their score is
the calibrated probability that no genuine customer speaks (services.voice.probability). At or above
`rules.sure` the flag is "likely"; from `rules.listen` it is "unsure", shown as "listen carefully", never
as an accusation; below, nothing. A backend without a calibration never goes past "unsure". Each carries
the reason in numbers (`details.why`), which the card turns into one line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Audio, AudioKind, Contact, FlagKind, Project, VoiceFlag, Voiceprint, VoiceRole
from models.payloads import (
    DuplicateRecording,
    FlagDetails,
    LowSpeech,
    OtherPromoter,
    RepeatedCustomer,
    SelfRecording,
)
from services.voice.analysis import Analysis
from services.voice.encoder import EncoderThresholds
from services.voice.index import VoiceprintCatalog
from services.voice.probability import packaged


@dataclass(frozen=True)
class VoiceRules:
    same_speaker: float
    # Stricter for repeated customers: one voice is compared with hundreds, so chance matches add up
    # (bench/voice_bench.py: at 0.85, 97.5% precision and 97.5% recall over 200 contacts).
    repeat_same_speaker: float = 0.85
    repeat_min_contacts: int = 2
    repeat_window_days: int = 30
    near_duplicate: float = 0.97
    # A looser whole-recording match that counts when every voice matches too (None: not used).
    near_duplicate_voices: float | None = None
    duplicate_voice: float = 0.9
    min_speech_seconds: float = 5.0
    # Adaptive s-norm score at which two customer voices are one person (bench/field_eval.py fits it on
    # field-realistic contacts); the raw cosine above decides while a project has too few voiceprints.
    repeat_snorm: float = 3.0
    sure: float = 0.9  # probability at which a self-recording flag is stated as likely
    listen: float = 0.5  # probability from which it is raised as "listen carefully"

    @classmethod
    def for_project(cls, project: Project, encoder: EncoderThresholds) -> VoiceRules:
        """The encoder's defaults, overridden by the project's calibration for that backend."""
        settings: dict[str, Any] = project.voice_thresholds or {}
        backend_settings: dict[str, Any] = settings.get(encoder.name, {})
        fitted = _fitted(encoder)
        return cls(
            same_speaker=float(backend_settings.get("same_speaker", encoder.same_speaker_threshold)),
            repeat_same_speaker=float(
                backend_settings.get("repeat_same_speaker", fitted["repeat_same_speaker"])
            ),
            repeat_snorm=float(backend_settings.get("repeat_snorm", fitted["repeat_snorm"])),
            repeat_min_contacts=int(settings.get("repeat_min_contacts", 2)),
            repeat_window_days=int(settings.get("repeat_window_days", 30)),
            near_duplicate=float(backend_settings.get("near_duplicate", encoder.duplicate_threshold)),
            near_duplicate_voices=_optional(
                backend_settings.get("near_duplicate_voices", encoder.duplicate_voices_whole)
            ),
            duplicate_voice=float(backend_settings.get("duplicate_voice", encoder.duplicate_voice_threshold)),
            min_speech_seconds=float(settings.get("min_speech_seconds", 5.0)),
            sure=float(settings.get("sure", 0.9)),
            listen=float(settings.get("listen", 0.5)),
        )

    @classmethod
    def for_encoder(cls, encoder: EncoderThresholds) -> VoiceRules:
        fitted = _fitted(encoder)
        return cls(
            encoder.same_speaker_threshold,
            fitted["repeat_same_speaker"],
            near_duplicate=encoder.duplicate_threshold,
            near_duplicate_voices=encoder.duplicate_voices_whole,
            duplicate_voice=encoder.duplicate_voice_threshold,
            repeat_snorm=fitted["repeat_snorm"],
        )


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def _fitted(encoder: EncoderThresholds) -> dict[str, float]:
    """Repeat thresholds fitted on field-realistic contacts with the packaged calibration, else the
    encoder's own defaults."""
    calibration = packaged(encoder.calibration_name)
    extra = calibration.extra if calibration else {}
    return {
        "repeat_same_speaker": float(extra.get("repeat_same_speaker", encoder.repeat_threshold)),
        "repeat_snorm": float(extra.get("repeat_snorm", encoder.repeat_snorm)),
    }


@dataclass
class RaisedFlag:
    details: FlagDetails  # says the flag's kind
    score: float
    matched_contact_ids: list[int] = field(default_factory=list)

    @property
    def kind(self) -> FlagKind:
        return self.details.kind


def every_voice_matches(ours: list[np.ndarray], theirs: list[np.ndarray], threshold: float) -> bool:
    """Two recordings of the same conversation: both heard two voices or more, and each of our voices has
    its match among theirs. One promoter's genuine contacts share only the promoter's voice."""
    if len(ours) < 2 or len(theirs) < 2:
        return False
    return all(max(float(v @ w) for w in theirs) >= threshold for v in ours)


def vector(row: Voiceprint) -> np.ndarray:
    return np.frombuffer(row.vector, dtype=np.float32)


async def _prints(session: AsyncSession, *where: Any) -> list[Voiceprint]:
    return list(await session.scalars(select(Voiceprint).where(*where).order_by(Voiceprint.id)))


async def promoter_reference(session: AsyncSession, user_id: int, backend: str) -> np.ndarray | None:
    row = await session.scalar(
        select(Voiceprint)
        .join(Audio, Audio.id == Voiceprint.audio_id)
        .where(
            Voiceprint.user_id == user_id,
            Voiceprint.role == VoiceRole.PROMOTER,
            Audio.kind == AudioKind.ENROLMENT,
            Voiceprint.backend == backend,
        )
        .order_by(Voiceprint.id.desc())
        .limit(1)
    )
    return vector(row) if row is not None else None


async def _cluster_key(session: AsyncSession, contact: Contact, matched: list[int]) -> str:
    """A cluster keeps the key it was first given, so that managers are alerted once per voice even as
    the window slides and later contacts match only its newer members."""
    known = await session.scalar(
        select(VoiceFlag.cluster_key)
        .where(
            VoiceFlag.contact_id.in_(matched),
            VoiceFlag.kind == FlagKind.REPEATED_CUSTOMER,
            VoiceFlag.cluster_key.is_not(None),
        )
        .order_by(VoiceFlag.id)
        .limit(1)
    )
    return known or f"c{min([*matched, contact.id])}"


def recording_flags(analysis: Analysis, rules: VoiceRules) -> list[RaisedFlag]:
    """The flags one recording raises on its own, with no other contact to compare (also `voice analyze`)."""
    flags: list[RaisedFlag] = []
    if analysis.speech_seconds < rules.min_speech_seconds:
        flags.append(
            RaisedFlag(
                LowSpeech(speech_seconds=round(analysis.speech_seconds, 1)),
                round(1 - analysis.speech_seconds / rules.min_speech_seconds, 2),
            )
        )
    if analysis.speech_seconds < rules.min_speech_seconds:
        return flags  # too little speech to judge who spoke: said by the low-speech flag, nothing more
    p = analysis.p_self_recorded
    if p is not None and p >= rules.listen:
        kind = FlagKind.NO_CUSTOMER if not analysis.customers else FlagKind.CUSTOMER_IS_PROMOTER
        sure = analysis.calibrated and p >= rules.sure
        flags.append(
            RaisedFlag(
                SelfRecording(
                    kind=kind,
                    confidence="likely" if sure else "unsure",
                    calibrated=analysis.calibrated,
                    why=why(analysis),
                ),
                round(p, 3),
            )
        )
    return flags


def why(analysis: Analysis) -> dict[str, float]:
    """The numbers behind a self-recording judgement, for the card's one-line reason."""
    evidence = analysis.evidence
    reason: dict[str, float] = {
        "speech": round(analysis.speech_seconds, 1),
        "voices": float(len(analysis.voices)),
        "second": round(float(evidence.get("minor_seconds", 0.0)), 1),
        "separation": round(float(evidence.get("gap_z", 0.0)), 2),
    }
    if "enrol_customer" in evidence:
        reason["enrol_customer"] = round(float(evidence["enrol_customer"]), 2)
        reason["enrol_promoter"] = round(float(evidence["enrol_promoter"]), 2)
    return reason


async def raise_flags(
    session: AsyncSession,
    contact: Contact,
    analysis: Analysis,
    rules: VoiceRules,
    *,
    backend: str,
    now: dt.datetime,
    catalog: VoiceprintCatalog | None = None,
) -> list[RaisedFlag]:
    """Flags that need the project's other voiceprints. Promoters' enrolments are few and read directly;
    customer and whole-recording voiceprints are searched in the worker's catalog."""
    catalog = catalog or VoiceprintCatalog()
    flags = recording_flags(analysis, rules)
    same = (Voiceprint.project_id == contact.project_id, Voiceprint.backend == backend)
    for voice in analysis.customers:
        others = await _prints(
            session,
            *same,
            Voiceprint.role == VoiceRole.PROMOTER,
            Voiceprint.user_id != contact.promoter_id,
            Voiceprint.contact_id.is_(None),
        )
        scored = [(float(voice.embedding @ vector(o)), o) for o in others]
        hits = [(s, o) for s, o in scored if s >= rules.same_speaker]
        if hits:
            score, hit = max(hits, key=lambda h: h[0])
            flags.append(RaisedFlag(OtherPromoter(promoter_user_id=hit.user_id), round(score, 3)))
        since = now - dt.timedelta(days=rules.repeat_window_days)
        matches, normalised = await catalog.search_normalised(
            session,
            project_id=contact.project_id,
            backend=backend,
            role=VoiceRole.CUSTOMER,
            query=voice.embedding,
            threshold=rules.repeat_snorm,
            raw_threshold=rules.repeat_same_speaker,
            exclude_contact_id=contact.id,
        )
        repeated = sorted(
            {
                m.contact_id
                for m in matches
                if m.contact_id and m.contact_id != contact.id and m.created_at >= since
            }
        )
        if len(repeated) >= rules.repeat_min_contacts:
            flags.append(
                RaisedFlag(
                    RepeatedCustomer(
                        cluster=await _cluster_key(session, contact, repeated), normalised=normalised
                    ),
                    float(len(repeated)),
                    repeated,
                )
            )
    if analysis.whole is not None:
        duplicate = await _duplicate(session, contact, analysis, rules, backend=backend, catalog=catalog)
        if duplicate is not None:
            flags.append(duplicate)
    return flags


async def _duplicate(
    session: AsyncSession,
    contact: Contact,
    analysis: Analysis,
    rules: VoiceRules,
    *,
    backend: str,
    catalog: VoiceprintCatalog,
) -> RaisedFlag | None:
    """A resent recording: its whole-recording print is as close as `near_duplicate`, or close enough
    (`near_duplicate_voices`) with every voice of both recordings matching (`duplicate_voice`). One
    promoter's genuine contacts share the promoter's voice only; a resend shares the customer's too."""
    assert analysis.whole is not None
    loose = min(rules.near_duplicate, rules.near_duplicate_voices or rules.near_duplicate)
    near = await catalog.search(
        session,
        project_id=contact.project_id,
        backend=backend,
        role=VoiceRole.UNKNOWN,
        query=analysis.whole,
        threshold=loose,
    )
    scores: dict[int, float] = {}
    for match in near:
        if match.contact_id and match.contact_id != contact.id:
            scores[match.contact_id] = max(match.score, scores.get(match.contact_id, -1.0))
    ours = [voice.embedding for voice in analysis.voices]
    duplicates = []
    for other, score in sorted(scores.items()):
        if score >= rules.near_duplicate:
            duplicates.append(other)
            continue
        theirs = await _prints(
            session,
            Voiceprint.contact_id == other,
            Voiceprint.backend == backend,
            Voiceprint.role.in_((VoiceRole.PROMOTER, VoiceRole.CUSTOMER)),
        )
        if every_voice_matches(ours, [vector(row) for row in theirs], rules.duplicate_voice):
            duplicates.append(other)
    if not duplicates:
        return None
    method: Literal["embedding", "embedding+voices"] = (
        "embedding" if all(scores[c] >= rules.near_duplicate for c in duplicates) else "embedding+voices"
    )
    return RaisedFlag(
        DuplicateRecording(method=method), round(max(scores[c] for c in duplicates), 3), duplicates
    )
