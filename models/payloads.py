"""Typed payloads of the JSON columns: what a voice flag, a manager alert, a digest and a voice analysis keep.

The shapes are exactly the ones written before they were typed (no data migration): a flag's and an alert's
details do not hold their kind, the row's `kind` column does, so they are read with `flag_details` and
`alert_details`, which add it as the union's discriminator. Defaults are the ones readers assumed when a key
was missing, so rows written by older versions still load.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from models.enums import AlertKind, FlagKind, NpsScale


class Payload(BaseModel):
    """Frozen: a payload is replaced, never changed in place (the ORM would not see the change)."""

    model_config = ConfigDict(frozen=True, coerce_numbers_to_str=True)

    def stored(self) -> dict[str, Any]:
        """The JSON kept in the column; a kind-keyed payload's kind lives in the row's own `kind` column."""
        return self.model_dump(mode="json", exclude={"kind"})


class _KindKeyed(Protocol):
    @property
    def kind(self) -> Any: ...

    def stored(self) -> dict[str, Any]: ...


K = TypeVar("K", bound=_KindKeyed)


class KindKeyedDetails(Generic[K]):
    """A row's `kind` and `stored_details` columns read and written as one typed payload (voice flags,
    manager alerts): the payload's class says its kind, so no code pairs a kind with another's details."""

    def __init__(self, read: Callable[[Any, dict[str, Any] | None], K]) -> None:
        self._read = read

    @overload
    def __get__(self, row: None, owner: type[Any]) -> KindKeyedDetails[K]: ...

    @overload
    def __get__(self, row: object, owner: type[Any]) -> K: ...

    def __get__(self, row: Any, owner: type[Any]) -> KindKeyedDetails[K] | K:
        return self if row is None else self._read(row.kind, row.stored_details)

    def __set__(self, row: Any, value: K) -> None:
        row.kind, row.stored_details = value.kind, value.stored()


# -- voice flags, keyed by FlagKind ------------------------------------------------------------------------
class LowSpeech(Payload):
    kind: Literal[FlagKind.LOW_SPEECH] = FlagKind.LOW_SPEECH
    speech_seconds: float = 0.0


class SelfRecording(Payload):
    """Flags 1 and 2: how sure, and the numbers behind it (services.voice.flags.why) for the card's reason."""

    kind: Literal[FlagKind.NO_CUSTOMER, FlagKind.CUSTOMER_IS_PROMOTER]
    confidence: Literal["likely", "unsure"] | None = None  # None: raised before flags said how sure they were
    calibrated: bool = False
    why: dict[str, float] = Field(default_factory=dict)


class OtherPromoter(Payload):
    kind: Literal[FlagKind.CUSTOMER_IS_OTHER_PROMOTER] = FlagKind.CUSTOMER_IS_OTHER_PROMOTER
    promoter_user_id: int | None = None


class RepeatedCustomer(Payload):
    kind: Literal[FlagKind.REPEATED_CUSTOMER] = FlagKind.REPEATED_CUSTOMER
    cluster: str | None = None  # also the row's cluster_key: one manager alert per voice
    normalised: bool = False  # decided on s-normalised scores (else raw cosine)


class DuplicateRecording(Payload):
    kind: Literal[FlagKind.DUPLICATE_RECORDING] = FlagKind.DUPLICATE_RECORDING
    method: Literal["sha256", "embedding", "embedding+voices"] | None = None


class SurveySameRespondent(Payload):
    kind: Literal[FlagKind.SURVEY_SAME_RESPONDENT] = FlagKind.SURVEY_SAME_RESPONDENT
    tried: bool | None = None  # the customer tried a second survey (refused), not only answered one


class SurveyFastAnswer(Payload):
    kind: Literal[FlagKind.SURVEY_FAST_ANSWER] = FlagKind.SURVEY_FAST_ANSWER
    seconds: float = 0.0


class SurveyFreshAccounts(Payload):
    kind: Literal[FlagKind.SURVEY_FRESH_ACCOUNTS] = FlagKind.SURVEY_FRESH_ACCOUNTS
    fresh: int = 0
    answers: int = 0
    expected: float = 0.1


FlagDetails = Annotated[
    LowSpeech
    | SelfRecording
    | OtherPromoter
    | RepeatedCustomer
    | DuplicateRecording
    | SurveySameRespondent
    | SurveyFastAnswer
    | SurveyFreshAccounts,
    Field(discriminator="kind"),
]
_FLAG_DETAILS: TypeAdapter[FlagDetails] = TypeAdapter(FlagDetails)


def flag_details(kind: FlagKind, stored: dict[str, Any] | None) -> FlagDetails:
    return _FLAG_DETAILS.validate_python({**(stored or {}), "kind": kind})


# -- manager alerts, keyed by AlertKind --------------------------------------------------------------------
class CustomerScore(Payload):
    score: int = 0
    scale: NpsScale = NpsScale.ZERO_TO_TEN
    verbatim: str | None = None  # sealed (models.crypto): alert details are not an encrypted column


class Detractor(CustomerScore):
    kind: Literal[AlertKind.DETRACTOR] = AlertKind.DETRACTOR
    promoter: str = "?"
    store: str | None = None


class ClientDetractor(CustomerScore):
    kind: Literal[AlertKind.CLIENT_DETRACTOR] = AlertKind.CLIENT_DETRACTOR
    client: str = "?"
    client_telegram_id: int | None = None
    client_survey_id: int | None = None  # the one alert per survey is found by it


class Fraud(Payload):
    kind: Literal[AlertKind.FRAUD] = AlertKind.FRAUD
    promoter: str
    comment: str


class RepeatedVoice(Payload):
    kind: Literal[AlertKind.REPEATED_VOICE] = AlertKind.REPEATED_VOICE
    count: int
    promoters: int
    contacts: str  # "#12, #15, …" as the alert shows them


class SlaStreak(Payload):
    kind: Literal[AlertKind.SLA_STREAK] = AlertKind.SLA_STREAK
    count: int


class Exhausted(Payload):
    kind: Literal[AlertKind.EXHAUSTED] = AlertKind.EXHAUSTED
    tries: int


class RejectionStreak(Payload):
    kind: Literal[AlertKind.REJECTION_STREAK] = AlertKind.REJECTION_STREAK
    promoter: str
    count: int
    contacts: str


class AnalysisBacklog(Payload):
    kind: Literal[AlertKind.ANALYSIS_BACKLOG] = AlertKind.ANALYSIS_BACKLOG
    count: int
    minutes: int


class ReviewerIdle(Payload):
    kind: Literal[AlertKind.REVIEWER_IDLE] = AlertKind.REVIEWER_IDLE
    reviewer: str
    open: int
    minutes: int


AlertDetails = Annotated[
    Detractor
    | ClientDetractor
    | Fraud
    | RepeatedVoice
    | SlaStreak
    | Exhausted
    | RejectionStreak
    | AnalysisBacklog
    | ReviewerIdle,
    Field(discriminator="kind"),
]
OperationAlert = (
    Fraud | RepeatedVoice | SlaStreak | Exhausted | RejectionStreak | AnalysisBacklog | ReviewerIdle
)
_ALERT_DETAILS: TypeAdapter[AlertDetails] = TypeAdapter(AlertDetails)


def alert_details(kind: AlertKind, stored: dict[str, Any] | None) -> AlertDetails:
    return _ALERT_DETAILS.validate_python({**(stored or {}), "kind": kind})


# -- the digest log ----------------------------------------------------------------------------------------
def _none_when_older(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A part written in an older shape reads as missing: the digest computes that day again."""
    try:
        return handler(value)
    except ValidationError:
        return None


class LoggedDay(Payload):
    """One day's figures as its digest computed them (services.digest.DayFigures)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    received: float = 0
    reviewed: float = 0
    approved: float = 0
    rejected: float = 0
    fraud: float = 0
    average_score: float | None = None
    median_minutes_to_verdict: float | None = None
    sla_breaches: float = 0
    flags: dict[str, int] = Field(default_factory=dict)


class LoggedCapacity(Payload):
    """The digest's capacity figures as it computed them (services.capacity.Capacity, the same fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    automatic: int = 0
    to_people: int = 0
    decided_by_people: int = 0
    waiting: int = 0
    minutes_per_contact: float = 0.0
    minutes_source: str = "recordings"
    reviews_measured: int = 0
    queue_hours: float = 0.0


class LoggedCriterionAudit(Payload):
    """One criterion of the digest's audit block (services.automatic.CriterionAudit, less its words)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    pairs: int = 0
    agreement: float | None = None
    returned: bool = False


class LoggedAudit(Payload):
    """The digest's audit of automatic verdicts (services.automatic.AuditReview): the window's comparison,
    each criterion, and the criteria that changed hands with that digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: int = 0
    bar: float = 0.0
    min_pairs: int = 0
    pairs: int = 0
    agreement: float | None = None
    kappa: float | None = None
    precision: float | None = None
    recall: float | None = None
    criteria: list[LoggedCriterionAudit] = Field(default_factory=list)
    returned: list[str] = Field(default_factory=list)  # handed back to people with this digest
    restored: list[str] = Field(default_factory=list)  # brought back to the machine with it


class DigestFigures(Payload):
    """What the digest log keeps of a sent digest; later digests read their trend and week back from it."""

    day: dt.date | None = None
    late: bool = False
    today: Annotated[LoggedDay | None, WrapValidator(_none_when_older)] = None
    # promoter id -> (reviewed, approved) that day
    promoters: Annotated[dict[int, tuple[int, int]] | None, WrapValidator(_none_when_older)] = None
    baseline: Annotated[LoggedDay | None, WrapValidator(_none_when_older)] = None
    nps: float | None = None
    nps_responses: int = 0
    open_alerts: int = 0
    disputes_opened: int = 0
    disputes_resolved: int = 0
    reviewers: list[tuple[str, int]] = Field(default_factory=list)
    # None in rows written before capacity was reported (issue #25 item 6)
    capacity: Annotated[LoggedCapacity | None, WrapValidator(_none_when_older)] = None
    # None where routing was off, and in rows written before the audit was reported (issue #25 item 4)
    audit: Annotated[LoggedAudit | None, WrapValidator(_none_when_older)] = None


# -- voice analysis ----------------------------------------------------------------------------------------
class VoiceSeconds(Payload):
    role: str  # promoter, customer, unknown
    seconds: float


class ShortenedAudio(Payload):
    """The recording with its long pauses cut (services.pauses), kept in the audio store for reviewers'
    cards where the project turned `cut_pauses` on."""

    key: str  # infra.storage key
    seconds: float
    original_seconds: float


class AnalysisEvidence(Payload):
    """What a self-recording judgement rested on, kept for every analysed contact (AnalysisTask.evidence):
    reviewers' verdicts turn it into labels (`voice quality`, `voice eval --from-reviews`)."""

    backend: str | None = None
    enrolled: bool = False
    features: dict[str, float] = Field(default_factory=dict)  # services.voice.analysis.Analysis.evidence
    p_one_voice: float | None = None
    p_self_recorded: float | None = None
    calibrated: bool = False
    speech_seconds: float = 0.0
    voices: int = 0
    voice_seconds: list[VoiceSeconds] = Field(default_factory=list)  # who spoke how long, for the card
    overlap_seconds: float = 0.0
    segments: list[tuple[float, float, str]] = Field(default_factory=list)  # (start, end, role), capped
    shortened: ShortenedAudio | None = None  # the note with long pauses cut, where the project wants it
