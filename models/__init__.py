"""ORM models: the whole Fieldcheck domain. Importing this package registers every table."""

from models.base import Base
from models.billing import BillingDay, BillingRollup, BillingStale
from models.console import ConsoleInitSeen, ConsoleLink
from models.contact import CONTACT_TRANSITIONS, AnalysisTask, Audio, Contact, InvalidTransition
from models.dashboard import (
    DashboardDay,
    DashboardPromoterDay,
    DashboardRollup,
    DashboardStale,
    DashboardStoreDay,
)
from models.enums import (
    AlertKind,
    AlertStatus,
    AnalysisState,
    AssignmentKind,
    AssignmentStatus,
    AudioKind,
    ContactStatus,
    DisputeStatus,
    FlagKind,
    NpsCategory,
    NpsScale,
    OutboxStatus,
    Role,
    SurveyStatus,
    Verdict,
    VoiceRole,
)
from models.nps import ClientSurvey, ManagerAlert, NpsAnswer, NpsSurvey
from models.ops import DigestLog, FsmState, InboxUpdate, OutboxMessage, ProcessedUpdate
from models.organisation import Organisation, Project
from models.review import Assignment, Dispute, Review
from models.speech import CriterionReturn
from models.user import Invite, Membership, User
from models.voice import VoiceFlag, Voiceprint

__all__ = [
    "CONTACT_TRANSITIONS",
    "AlertKind",
    "AlertStatus",
    "AnalysisState",
    "AnalysisTask",
    "Assignment",
    "AssignmentKind",
    "AssignmentStatus",
    "Audio",
    "AudioKind",
    "Base",
    "BillingDay",
    "BillingRollup",
    "BillingStale",
    "ClientSurvey",
    "ConsoleInitSeen",
    "ConsoleLink",
    "Contact",
    "ContactStatus",
    "CriterionReturn",
    "DashboardDay",
    "DashboardPromoterDay",
    "DashboardRollup",
    "DashboardStale",
    "DashboardStoreDay",
    "DigestLog",
    "Dispute",
    "DisputeStatus",
    "FlagKind",
    "FsmState",
    "InboxUpdate",
    "InvalidTransition",
    "Invite",
    "ManagerAlert",
    "Membership",
    "NpsAnswer",
    "NpsCategory",
    "NpsScale",
    "NpsSurvey",
    "Organisation",
    "OutboxMessage",
    "OutboxStatus",
    "ProcessedUpdate",
    "Project",
    "Review",
    "Role",
    "SurveyStatus",
    "User",
    "Verdict",
    "VoiceFlag",
    "VoiceRole",
    "Voiceprint",
]
