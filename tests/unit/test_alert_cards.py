"""Manager alerts rendered from a view object, with no session or row: the text keys each state uses, in
both languages, and the buttons each state offers (issue #28: pure renderers)."""

from __future__ import annotations

import pytest
from aiogram.utils.i18n import gettext as _

from models import AlertKind, AlertStatus
from models.payloads import Detractor, SlaStreak
from services.alerts import AlertView
from telegram_ui.alert_cards import alert_keyboard, alert_text
from telegram_ui.callbacks import AlertAction, AlertButton
from telegram_ui.cards import rendered
from telegram_ui.i18n import create_i18n


def view(**changes: object) -> AlertView:
    base: dict[str, object] = {
        "id": 7,
        "kind": AlertKind.DETRACTOR,
        "status": AlertStatus.OPEN,
        "contact_id": 41,
        "project_name": "Coffee <Moscow>",
        "details": Detractor(score=2, promoter="Anna", store="Store 5"),
        "taker": None,
        "resolver": None,
        "resolution_note": None,
    }
    return AlertView(**{**base, **changes})  # type: ignore[arg-type]


def key(locale: str, text_key: str, /, **values: object) -> str:
    i18n = create_i18n()
    return str(rendered(i18n, locale, lambda: _(text_key).format(**values)))


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_a_detractor_alert_is_built_from_its_keys(locale: str) -> None:
    text = rendered(create_i18n(), locale, alert_text, view())
    assert text == "\n".join(
        [
            key(
                locale,
                "alert-detractor",
                project="Coffee &lt;Moscow&gt;",
                id=41,
                promoter="Anna",
                score="2/10",
            ),
            key(locale, "alert-store", store="Store 5"),
            key(locale, "alert-no-verbatim"),
        ]
    )


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_taken_and_resolved_say_by_whom(locale: str) -> None:
    i18n = create_i18n()
    taken = rendered(i18n, locale, alert_text, view(status=AlertStatus.TAKEN, taker="Olga"))
    assert taken.endswith("\n" + key(locale, "alert-taken-by", name="Olga"))
    resolved = rendered(
        i18n, locale, alert_text, view(status=AlertStatus.RESOLVED, resolver="Ivan", resolution_note="<ok>")
    )
    assert resolved.endswith("\n" + key(locale, "alert-resolved-by", name="Ivan", note="&lt;ok&gt;"))


def test_an_operation_alert_uses_its_details() -> None:
    sla = view(kind=AlertKind.SLA_STREAK, contact_id=None, details=SlaStreak(count=5))
    assert rendered(create_i18n(), "en", alert_text, sla) == key(
        "en", "alert-sla", count=5, id=None, project="Coffee &lt;Moscow&gt;"
    )


def test_buttons_follow_the_state() -> None:
    def actions(alert: AlertView) -> list[AlertAction]:
        markup = rendered(create_i18n(), "en", alert_keyboard, alert)
        return [AlertButton.unpack(b.callback_data).action for row in markup.inline_keyboard for b in row]

    assert actions(view()) == [AlertAction.OPEN, AlertAction.TAKE, AlertAction.RESOLVE, AlertAction.MUTE]
    assert actions(view(status=AlertStatus.TAKEN)) == [
        AlertAction.OPEN,
        AlertAction.RESOLVE,
        AlertAction.MUTE,
    ]
    assert actions(view(status=AlertStatus.RESOLVED, contact_id=None)) == [AlertAction.MUTE]
