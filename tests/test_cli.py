"""The `fieldcheck` command as a person runs it: administration, migration, and the offline sandbox."""

from __future__ import annotations

import os
import re
import string
import subprocess
from pathlib import Path

import pytest

from infra.settings import PROJECT_ROOT
from telegram_ui.cards import MACHINE_MARK
from tests.helpers import fragment, label, run_cli, template, text


def _regex(key: str, **holes: str) -> str:
    """`key`'s text (one without markup) as a regular expression: each placeholder the expression given for
    it in `holes`, any text where none is given."""
    assert "<" not in template(key), key
    return "".join(
        re.escape(literal) + ("" if field is None else holes.get(field, ".*?"))
        for literal, field, _spec, _conversion in string.Formatter().parse(template(key))
    )


def _run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env, cwd, timeout)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"BOT_TOKEN", "DATABASE_URL", "ADMIN_IDS"}}
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        SANDBOX_DIR=str(tmp_path / "sandbox"),
        PYTHONPATH=str(PROJECT_ROOT),
        LOG_LEVEL="WARNING",
    )
    return env


def test_admin_commands(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert _run(["migrate"], cli_env, tmp_path).returncode == 0
    created = _run(["admin", "create-project", "Acme", "Street sales"], cli_env, tmp_path)
    assert created.returncode == 0, created.stderr
    assert "project #1: Acme / Street sales" in created.stdout
    again = _run(["admin", "create-project", "Acme", "Street sales"], cli_env, tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    link = _run(
        ["admin", "invite", "1", "reviewer", "--uses", "3", "--bot-username", "acme_bot"], cli_env, tmp_path
    )
    assert link.returncode == 0, link.stderr
    assert link.stdout.startswith("https://t.me/acme_bot?start=inv_")
    missing = _run(["admin", "invite", "42", "promoter"], cli_env, tmp_path)
    assert missing.returncode == 2 and "no project 42" in missing.stderr
    listed = _run(["admin", "list-projects"], cli_env, tmp_path)
    assert "Acme\tStreet sales" in listed.stdout
    report = _run(
        ["admin", "report", "1", "--from", "2026-11-01", "--to", "2026-11-30", "--lang", "en"],
        cli_env,
        tmp_path,
    )
    assert report.returncode == 0, report.stderr
    title = text("report-title", project="Street sales", span="01.11.2026–30.11.2026")
    assert title in report.stdout and "<b>" not in report.stdout
    assert text("report-empty") in report.stdout
    configured = _run(
        [
            "admin",
            "configure",
            "1",
            "--rejections-alert-after",
            "4",
            "--idle-alert-minutes",
            "0",
            "--retention-days",
            "90",
            "--speech",
            "--speech-products",
            "Coffee Gold, Tea",
        ],
        cli_env,
        tmp_path,
    )
    assert configured.returncode == 0, configured.stderr
    assert "rejections_before_alert: 4" in configured.stdout and "idle_alert_minutes: 0" in configured.stdout
    assert "retention_days: 90" in configured.stdout
    assert "speech_settings: {'enabled': True, 'products': ['Coffee Gold', 'Tea']}" in configured.stdout
    off = _run(["admin", "configure", "1", "--no-speech"], cli_env, tmp_path)
    assert "speech_settings: {'enabled': False, 'products': ['Coffee Gold', 'Tea']}" in off.stdout  # merged
    routed = _run(
        ["admin", "configure", "1", "--speech", "--speech-routing", "--audit-share", "0.2"], cli_env, tmp_path
    )
    assert routed.returncode == 0, routed.stderr
    assert (
        "speech_settings: {'enabled': True, 'products': ['Coffee Gold', 'Tea'], 'routing': True,"
        " 'audit_share': 0.2}" in routed.stdout
    )
    unrouted = _run(["admin", "configure", "1", "--no-speech-routing"], cli_env, tmp_path)
    assert "'routing': False, 'audit_share': 0.2}" in unrouted.stdout
    # A band for middling scripts, set one share at a time: the verdict's rules merge key by key.
    banded = _run(["admin", "configure", "1", "--approve-share", "0.75"], cli_env, tmp_path)
    assert banded.returncode == 0, banded.stderr
    banded = _run(["admin", "configure", "1", "--reject-share", "0.35"], cli_env, tmp_path)
    assert "'verdict': {'approve_share': 0.75, 'reject_share': 0.35}}" in banded.stdout
    inverted = _run(["admin", "configure", "1", "--reject-share", "0.8"], cli_env, tmp_path)
    assert inverted.returncode == 2 and "under the rejection share" in inverted.stderr
    kept = _run(["admin", "configure", "1"], cli_env, tmp_path)
    assert "'verdict': {'approve_share': 0.75, 'reject_share': 0.35}}" in kept.stdout  # nothing half-written
    day = _run(["admin", "report", "1", "--digest", "2026-11-30"], cli_env, tmp_path)
    assert day.returncode == 0
    assert text("digest-title", "ru", project="Street sales", day="30.11.2026") in day.stdout


def test_report_commands_write_billing_and_print_the_digest(cli_env: dict[str, str], tmp_path: Path) -> None:
    from openpyxl import load_workbook

    assert _run(["admin", "create-project", "Acme", "Street sales"], cli_env, tmp_path).returncode == 0
    out = tmp_path / "billing.xlsx"
    billed = _run(
        [
            "report",
            "billing",
            "1",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--format",
            "xlsx",
            "--out",
            str(out),
        ],
        cli_env,
        tmp_path,
    )
    assert billed.returncode == 0, billed.stderr
    assert f"0 rows written to {out}" in billed.stdout
    rows = list(load_workbook(out).active.iter_rows(values_only=True))  # type: ignore[union-attr]
    assert (
        rows[0][0] == "Date" and rows[-1][0] == "Total" and rows[-1][4] == 0
    )  # no rows: a plain 0, not SUM(E2:E1)
    wrong = _run(["report", "contacts", "1", "--format", "pdf"], cli_env, tmp_path)
    assert wrong.returncode == 2 and "--format must be xlsx or csv" in wrong.stderr
    forgot = _run(["forget", "424242", "--yes"], cli_env, tmp_path)  # nobody by that id: nothing erased
    assert (
        forgot.returncode == 0
        and "erased for Telegram id 424242:" in forgot.stdout
        and "people: 0" in forgot.stdout
    )
    digest = _run(["report", "digest", "1", "--day", "2026-11-30", "--lang", "en"], cli_env, tmp_path)
    title = text("digest-title", project="Street sales", day="30.11.2026")
    assert digest.returncode == 0 and title in digest.stdout, digest.stdout


# The whole offline demo in a subprocess: 31 s here before the speech scenes, about 100 s with them (Whisper
# base on two 40 s notes) on a loaded two-core machine; CI's CPU has been 2.5x slower.
@pytest.mark.timeout(400)
def test_run_without_token_plays_the_sandbox(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = _run(["run"], {**cli_env, "LOG_LEVEL": "INFO"}, tmp_path, timeout=380)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BOT_TOKEN is not set" in result.stderr
    transcript = (tmp_path / "sandbox" / "transcript.txt").read_text(encoding="utf-8")
    assert transcript.strip() in result.stdout
    joined = fragment("invite-accepted", "ru", role=label("role-promoter", "ru"))
    assert joined in transcript  # the invite was accepted
    assert fragment("intake-receipt", "ru", id=2) in transcript  # the promoter submitted two contacts
    assert text("card-expired", "ru", id=2) in transcript  # an expiry, then reassignment
    rejected = fragment("feedback", "ru", id=2, verdict=label("result-reject", "ru"))
    assert rejected in transcript  # the promoter got the feedback
    # The voice worker flagged the self-recording, saying how sure it is; the genuine dialogues carry no flag.
    flag = "|".join(re.escape(label(k)) for k in ("flag-no-customer", "flag-customer-is-promoter"))
    flagged = [
        _regex(key, flag=f"({flag})", percent=r"\d+%") for key in ("card-flag-likely", "card-flag-unsure")
    ]
    assert re.search("|".join(flagged), transcript), transcript[-3000:]
    assert "- genuine dialogues #1 and #2 (two voices on one phone): no voice flag" in result.stdout
    assert text("invite-unknown") in transcript
    # Customers answered the QR surveys; the unhappy one reached the manager, who resolved it.
    assert fragment("alert-detractor", "ru") in transcript
    assert fragment("alert-resolved-by", "ru", name="Maria (manager)") in transcript
    assert text("survey-thanks-resolved") in transcript
    # Speech routing (issue #25): one Russian dialogue decided by the machine and the promoter told; one in
    # the audit share sent to Rita, her card with the transcript and pre-filled marks; the audit in the digest.
    assert fragment("feedback-automatic", "ru", verdict=label("result-approve", "ru")) in transcript
    assert re.search(r"- speech routing decided contact #\d+ itself", result.stdout)
    assert re.search(r"- contact #\d+ went to a person \(routing's reasons: audit\)", result.stdout)
    promoter_said = text("card-transcript-line", speaker=label("speech-speaker-promoter"), text="")
    assert text("card-transcript") in transcript and promoter_said in transcript
    assert text("card-marks-prefilled", mark=MACHINE_MARK) in transcript
    # The project cut long pauses for reviewers: Rita's recording came without the customer's 6 s wait.
    cut = _regex("card-voice-pauses-cut", id=r"\d+", seconds=r"(\d+)", original=r"(\d+)")
    shortened = re.search(r"- Rita's recording came without the customer's wait: " + cut, result.stdout)
    assert shortened and int(shortened.group(2)) - int(shortened.group(1)) >= 5, result.stdout[-2000:]
    assert fragment("digest-audit", "ru", days=30, pairs=1, agreement="100%") in transcript
    assert fragment("digest-title", "ru") in transcript  # the manager's daily digest
    assert f"[pressed {label('btn-digest-promoters', 'ru')!r}]" in transcript
    assert "</b>" not in transcript  # the reports' HTML (their bold headings) is parsed, never shown raw
    # ...and the day's promoters and stores one press away
    assert fragment("report-title", "ru") in transcript
    charts = list((tmp_path / "sandbox").rglob("*.png"))  # the digest's chart stays in the sandbox folder
    assert charts and all(chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for chart in charts)
    assert (tmp_path / "sandbox" / "fieldcheck.db").exists()
    # The web console was served beside the bot, with a sign-in link for the manager and, where Debian's
    # chromium is installed, a screenshot of her dashboard.
    assert re.search(
        r"Web console \(served during the run\): http://127\.0\.0\.1:\d+/console/", result.stdout
    )
    assert re.search(r"one-time link\): http://127\.0\.0\.1:\d+/console/auth/link/[\w-]{20,}", result.stdout)
    dashboard = tmp_path / "sandbox" / "console-dashboard.png"
    assert dashboard.exists() == Path("/usr/bin/chromium").exists(), result.stderr[-3000:]
    # The reviewer saw the customer's phone on the card; no log line ever carries it, nor the bot token.
    assert "+7 916 555-01-23" in transcript or "+79165550123" in transcript
    logs = result.stderr + (tmp_path / "sandbox" / "fieldcheck.log").read_text(encoding="utf-8")
    assert len(logs.splitlines()) > 100, "the sandbox's whole log is kept in its folder"
    for secret in ("916 555", "9165550123", "916-555", "sandbox-token-not-secret"):
        assert secret not in logs, secret


def test_health_reports_and_fails_without_a_database(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert _run(["migrate"], cli_env, tmp_path).returncode == 0
    healthy = _run(["health"], cli_env, tmp_path)
    assert healthy.returncode == 0, healthy.stderr
    assert '"ok": true' in healthy.stdout and '"outbox_pending": 0' in healthy.stdout
    unreachable = {**cli_env, "DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
    down = _run(["health"], unreachable, tmp_path)
    assert down.returncode == 1 and "database unreachable" in down.stdout


def test_set_form_validates_with_clear_errors(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert _run(["admin", "create-project", "Acme", "Bank"], cli_env, tmp_path).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "questions:\n"
        "  - key: product\n    type: choice\n    text: {ru: 'Что?'}\n    options: [{key: a, text: {ru: А}}]\n"
        "  - key: product\n    type: colour\n    text: {ru: Цвет}\n",
        encoding="utf-8",
    )
    refused = _run(["admin", "set-form", "1", str(bad)], cli_env, tmp_path)
    assert refused.returncode == 2
    assert "questions.1.type" in refused.stderr and "choice needs at least 2 options" in refused.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert "not valid JSON" in _run(["admin", "set-form", "1", str(broken)], cli_env, tmp_path).stderr

    good = tmp_path / "form.yaml"
    good.write_text(
        "questions:\n"
        "  - key: card\n    type: yes_no\n    text: {ru: 'Оформили карту?', en: 'Card issued?'}\n"
        "  - key: income\n    type: number\n    min: 0\n    text: {ru: Доход, en: Income}\n",
        encoding="utf-8",
    )
    saved = _run(["admin", "set-form", "1", str(good)], cli_env, tmp_path)
    assert saved.returncode == 0 and "2 questions" in saved.stdout, saved.stderr
    shown = _run(["admin", "show-form", "1"], cli_env, tmp_path)
    assert "key: card" in shown.stdout and "Оформили карту?" in shown.stdout


def test_scorecard_and_project_settings(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert _run(["admin", "create-project", "Acme", "Tasting"], cli_env, tmp_path).returncode == 0
    bad = tmp_path / "card.yaml"
    bad.write_text("criteria:\n  - key: greeting\n    text: {en: Hi}\n    type: stars\n", encoding="utf-8")
    refused = _run(["admin", "set-scorecard", "1", str(bad)], cli_env, tmp_path)
    assert refused.returncode == 2 and "criteria.0.type" in refused.stderr
    good = tmp_path / "card.json"
    good.write_text(
        '{"criteria": [{"key": "greeting", "text": {"en": "Hi"}}, {"key": "offer", '
        '"text": {"en": "Offer"}, "type": "scale", "max": 5, "weight": 3, "critical": true}]}',
        encoding="utf-8",
    )
    saved = _run(["admin", "set-scorecard", "1", str(good)], cli_env, tmp_path)
    assert saved.returncode == 0 and "2 criteria" in saved.stdout, saved.stderr
    shown = _run(
        [
            "admin",
            "configure",
            "1",
            "--sla-minutes",
            "20",
            "--reviewers-chat",
            "-100123",
            "--rereview-time",
            "11:30",
        ],
        cli_env,
        tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    assert "review_sla_minutes: 20" in shown.stdout and "reviewers_chat_id: -100123" in shown.stdout
    assert "rereview_time: 11:30:00" in shown.stdout
    cleared = _run(["admin", "configure", "1", "--reviewers-chat", "0"], cli_env, tmp_path)
    assert "reviewers_chat_id: None" in cleared.stdout and "review_sla_minutes: 20" in cleared.stdout
    assert "not a reviewer" in _run(["admin", "senior", "1", "55"], cli_env, tmp_path).stderr


def test_voice_thresholds_are_set_per_project_and_backend(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert _run(["admin", "create-project", "Acme", "Street"], cli_env, tmp_path).returncode == 0
    from services.voice.probability import packaged

    fitted = packaged("resemblyzer")
    assert fitted is not None
    shown = _run(["voice", "thresholds", "1"], cli_env, tmp_path)
    # The backend in use (Resemblyzer, auto's pick here): its defaults are the thresholds fitted on
    # field-realistic contacts with its calibration.
    assert shown.returncode == 0, shown.stderr
    assert "backend: resemblyzer" in shown.stdout
    assert f"repeat_same_speaker: {fitted.extra['repeat_same_speaker']}" in shown.stdout
    assert f"repeat_snorm: {fitted.extra['repeat_snorm']}" in shown.stdout
    assert f"calibration: {fitted.source}" in shown.stdout
    changed = _run(
        ["voice", "thresholds", "1", "--repeat", "0.82", "--repeat-min-contacts", "3"], cli_env, tmp_path
    )
    assert "repeat_same_speaker: 0.82" in changed.stdout and "repeat_min_contacts: 3" in changed.stdout
    other = _run(["voice", "thresholds", "1", "--backend", "speechbrain"], cli_env, tmp_path).stdout
    assert "same_speaker: 0.25" in other and "repeat_same_speaker: 0.45" in other  # its own cosines
    assert "repeat_min_contacts: 3" in other  # shared by both backends
    again = _run(["voice", "thresholds", "1"], cli_env, tmp_path).stdout
    assert "repeat_same_speaker: 0.82" in again  # stored
    campplus = _run(["voice", "thresholds", "1", "--backend", "campplus"], cli_env, tmp_path).stdout
    own = packaged("campplus")
    assert own is not None and f"repeat_same_speaker: {own.extra['repeat_same_speaker']}" in campplus
    assert f"calibration: {own.source}" in campplus
    refused = _run(["voice", "thresholds", "1", "--backend", "ecapa"], cli_env, tmp_path)
    assert refused.returncode == 2 and "speechbrain, resemblyzer, campplus" in refused.stderr


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("WEBHOOK_BASE_URL", "http://bot.example.com", "must be an https:// address"),
        (
            "WEBHOOK_BASE_URL",
            "https://bot.example.com:8080",
            "port 8080: Telegram delivers only to ports 80, 88, 443 or 8443",
        ),
        ("WEBHOOK_SECRET", "not allowed!", "1-256 characters, only A-Z, a-z, 0-9, _ and -"),
        ("WEBHOOK_SECRET", "x" * 257, "1-256 characters"),
    ],
)
def test_webhook_settings_telegram_would_refuse_stop_the_start(
    cli_env: dict[str, str], tmp_path: Path, setting: str, value: str, message: str
) -> None:
    """setWebhook on api.telegram.org accepts HTTPS on ports 80, 88, 443 or 8443 and a secret_token of 1-256
    [A-Za-z0-9_-] (issue #14, item 16): refused at start with the setting's name, not at the first update."""
    env = {
        **cli_env,
        "BOT_TOKEN": "123:abc",
        "TELEGRAM_API_URL": "https://api.telegram.org",
        "WEBHOOK_BASE_URL": "https://bot.example.com:8443",
        "WEBHOOK_SECRET": "ok_secret-1",
        setting: value,
    }
    done = _run(["webhook"], env, tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_local_bot_api_server_takes_any_webhook_address() -> None:
    """A local Bot API server (and the stand-in) accepts plain HTTP and any port; only the secret's rule stays."""
    from infra.settings import Settings

    local = Settings(
        bot_token="123:abc",
        telegram_api_url="http://127.0.0.1:8081",
        webhook_base_url="http://10.0.0.5:9000",
        webhook_secret="s3cret-token",
    )
    assert local.webhook_base_url == "http://10.0.0.5:9000"


def test_voice_and_speech_commands_use_the_commands_database(cli_env: dict[str, str], tmp_path: Path) -> None:
    """`voice reembed` and `speech analyze --project` open the database as every command does
    (bot/cli/common.run_database: migrated first, closed at the end), not an engine of their own."""
    pytest.importorskip("resemblyzer")
    env = {**cli_env, "VOICE_BACKEND": "resemblyzer", "STORAGE_ROOT": str(tmp_path / "audio")}
    note = tmp_path / "note.wav"
    note.write_bytes(b"RIFF")  # the project is read before the recording
    missing = _run(["speech", "analyze", str(note), "--no-diarise", "--project", "42"], env, tmp_path)
    assert missing.returncode == 2 and "no project 42" in missing.stderr
    done = _run(["voice", "reembed", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"todo": 0' in done.stdout and '"failed": 0' in done.stdout
