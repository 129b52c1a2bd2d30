"""`fieldcheck` command line: run the bot (polling or webhook), migrate, sandbox, administration."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, cast

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.logs import setup_logging
from models import Role
from services.projects import ProjectError

app = typer.Typer(
    help="Fieldcheck: review of promoters' customer contacts through Telegram.",
    no_args_is_help=False,
    add_completion=False,
)
admin_app = typer.Typer(help="Administration without Telegram: projects and invites.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
voice_app = typer.Typer(
    help="Speaker verification: analyse, compare, run the analysis worker.", no_args_is_help=True
)
app.add_typer(voice_app, name="voice")


def _settings() -> Settings:
    settings = Settings()
    setup_logging(settings.log_level, settings.log_format)
    return settings


@app.callback(invoke_without_command=True)
def main_callback(ctx: typer.Context) -> None:
    """With no command: `run`."""
    if ctx.invoked_subcommand is None:
        run()


@app.command()
def run() -> None:
    """Run the bot with long polling; without BOT_TOKEN, run the offline sandbox instead."""
    settings = _settings()
    if settings.bot_token is None:
        typer.echo("BOT_TOKEN is not set: starting the offline sandbox (see README).", err=True)
        sandbox()
        return
    from bot.app import run_polling

    asyncio.run(run_polling(settings))


@app.command()
def webhook() -> None:
    """Run the bot behind a webhook (WEBHOOK_BASE_URL, WEBHOOK_SECRET)."""
    from bot.app import run_webhook

    asyncio.run(run_webhook(_settings()))


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to REVISION instead")] = False,
) -> None:
    """Bring the database schema to a revision (default: the newest)."""
    from bot import migrate as migrations

    settings = _settings()
    if down:
        migrations.downgrade(settings.database_url, revision)
    else:
        migrations.upgrade(settings.database_url, revision)
    typer.echo(f"database at {'downgraded to' if down else 'upgraded to'} {revision}")


@app.command()
def sandbox(
    out: Annotated[
        Path | None, typer.Option(help="where the sandbox keeps its database and artefacts")
    ] = None,
) -> None:
    """Offline demo: Bot API stand-in, bot and scheduler on SQLite, scripted users; prints transcripts."""
    from bot.sandbox import run_sandbox

    settings = Settings()
    setup_logging("WARNING", settings.log_format)
    out_dir = out or settings.sandbox_dir
    result = asyncio.run(run_sandbox(out_dir))
    typer.echo(result.transcript)
    typer.echo(f"\nArtefacts (database, files, transcript.txt): {out_dir}")


@admin_app.command("create-project")
def create_project(organisation: str, name: str, timezone: str = "Europe/Moscow") -> None:
    """Create a project (and its organisation if new)."""
    from services import projects

    async def go(session: AsyncSession) -> str:
        project = await projects.create_project(session, organisation, name, timezone=timezone)
        return f"project #{project.id}: {organisation} / {project.name}"

    typer.echo(_run_admin(go))


@admin_app.command("list-projects")
def list_projects() -> None:
    """List projects."""
    from services import projects

    async def go(session: AsyncSession) -> str:
        found = await projects.list_projects(session)
        return "\n".join(f"#{p.id}\t{p.organisation.name}\t{p.name}" for p in found) or "no projects"

    typer.echo(_run_admin(go))


@admin_app.command("invite")
def invite(
    project_id: int,
    role: Annotated[Role, typer.Argument(case_sensitive=False)],
    uses: Annotated[int, typer.Option(min=1)] = 1,
    days: Annotated[int, typer.Option(min=1)] = 7,
    bot_username: Annotated[str, typer.Option(help="for the printed deep link")] = "your_bot",
) -> None:
    """Create an invite and print its deep link."""
    from services import invites

    async def go(session: AsyncSession) -> str:
        created = await invites.create_invite(
            session, project_id, role, max_uses=uses, ttl=dt.timedelta(days=days)
        )
        return invites.deep_link(bot_username, created)

    typer.echo(_run_admin(go))


@admin_app.command("set-form")
def set_form(project_id: int, path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Replace a project's contact form with the one in a YAML or JSON file (validated first)."""
    from services import forms, projects

    try:
        schema = forms.load_form_file(path)
    except forms.FormSchemaError as exc:
        typer.echo(f"error: the form in {path} is not valid:\n{exc}", err=True)
        raise typer.Exit(2) from exc

    async def go(session: AsyncSession) -> str:
        await projects.set_form(session, project_id, schema)
        return f"project #{project_id}: form with {len(schema.questions)} questions saved"

    typer.echo(_run_admin(go))


@admin_app.command("show-form")
def show_form(project_id: int) -> None:
    """Print a project's contact form as YAML (the default form if none was set)."""
    import yaml

    from services import forms, projects

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        schema = forms.parse_form(project.form_schema or forms.DEFAULT_FORM)
        return yaml.safe_dump(
            schema.model_dump(mode="json", exclude_defaults=True), allow_unicode=True, sort_keys=False
        )

    typer.echo(_run_admin(go))


@admin_app.command("set-scorecard")
def set_scorecard(
    project_id: int, path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]
) -> None:
    """Replace a project's scorecard with the one in a YAML or JSON file (validated first)."""
    import json

    import yaml

    from services import projects, scorecard

    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        card = scorecard.parse_scorecard(raw)
    except (ValueError, yaml.YAMLError, scorecard.ScorecardError) as exc:
        typer.echo(f"error: the scorecard in {path} is not valid:\n{exc}", err=True)
        raise typer.Exit(2) from exc

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        project.scorecard = card.model_dump(mode="json", exclude_defaults=True)
        return f"project #{project_id}: scorecard with {len(card.criteria)} criteria saved"

    typer.echo(_run_admin(go))


@admin_app.command("configure")
def configure(
    project_id: int,
    reviewers_chat: Annotated[int | None, typer.Option(help="reviewers' group chat id (0: none)")] = None,
    managers_chat: Annotated[int | None, typer.Option(help="managers' group chat id (0: none)")] = None,
    sla_minutes: Annotated[int | None, typer.Option(min=1)] = None,
    max_open_cards: Annotated[int | None, typer.Option(min=1)] = None,
    calibration_share: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    dispute_window_hours: Annotated[int | None, typer.Option(min=0)] = None,
    min_audio_seconds: Annotated[int | None, typer.Option(min=1)] = None,
    max_audio_seconds: Annotated[int | None, typer.Option(min=1)] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA name, e.g. Europe/Moscow")] = None,
    rereview_time: Annotated[str | None, typer.Option(help="HH:MM in the project's timezone")] = None,
    analysis_wait_minutes: Annotated[
        int | None, typer.Option(min=0, help="how long review waits for voice flags (0: not at all)")
    ] = None,
) -> None:
    """Change a project's review settings; prints them all."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from services import projects

    if timezone:
        ZoneInfo(timezone)  # fails clearly on an unknown zone
    changes = {
        "reviewers_chat_id": None if reviewers_chat == 0 else reviewers_chat,
        "managers_chat_id": None if managers_chat == 0 else managers_chat,
        "review_sla_minutes": sla_minutes,
        "max_open_cards": max_open_cards,
        "calibration_share": calibration_share,
        "dispute_window_hours": dispute_window_hours,
        "min_audio_seconds": min_audio_seconds,
        "max_audio_seconds": max_audio_seconds,
        "timezone": timezone,
        "rereview_time": dt.time.fromisoformat(rereview_time) if rereview_time else None,
        "analysis_wait_minutes": analysis_wait_minutes,
    }
    given = {"reviewers_chat_id": reviewers_chat, "managers_chat_id": managers_chat}

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        for field, value in changes.items():
            if value is not None or given.get(field) == 0:
                setattr(project, field, value)
        shown = [*changes, "nps_scale", "retention_days"]
        return "\n".join(f"{field}: {getattr(project, field)}" for field in shown)

    typer.echo(_run_admin(go))


@admin_app.command("senior")
def senior(project_id: int, telegram_id: int, off: Annotated[bool, typer.Option("--off")] = False) -> None:
    """Mark a reviewer as senior (daily re-reviews go to seniors), or unmark with --off."""
    from sqlalchemy import select

    from models import Membership, User

    async def go(session: AsyncSession) -> str:
        membership = await session.scalar(
            select(Membership)
            .join(User, User.id == Membership.user_id)
            .where(
                User.telegram_id == telegram_id,
                Membership.project_id == project_id,
                Membership.role == Role.REVIEWER,
            )
        )
        if membership is None:
            raise ValueError(f"{telegram_id} is not a reviewer in project {project_id}")
        membership.is_senior = not off
        return f"{telegram_id}: {'not ' if off else ''}senior in project #{project_id}"

    typer.echo(_run_admin(go))


def _run_admin(go: Callable[[AsyncSession], Awaitable[str]]) -> str:
    """Migrate, then run one administrative action in one committed transaction."""
    from bot.migrate import upgrade
    from services.db import create_engine, create_session_factory

    settings = _settings()
    upgrade(settings.database_url)

    async def in_session() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await go(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(in_session())
    except (ValueError, ProjectError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _encoder(settings: Settings, *, worker: bool = False):  # type: ignore[no-untyped-def]
    """One-off commands run SpeechBrain as it is: converting or compiling pays off only over many recordings."""
    from services.voice.encoder import load_encoder

    return load_encoder(
        settings.voice_backend,
        settings.voice_model_dir,
        settings.voice_precision,
        runtime=settings.voice_runtime if worker else "torch",
    )


def _wave(path: Path):  # type: ignore[no-untyped-def]
    from services.audio import decode
    from services.voice.analysis import to_float

    return to_float(decode(path.read_bytes()))


@voice_app.command("analyze")
def voice_analyze(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    promoter: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="promoter's reference")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Voices, speech and segments of one recording, and the flags it raises on its own."""
    import json

    from services.voice.analysis import analyze
    from services.voice.flags import VoiceRules, recording_flags

    encoder = _encoder(_settings())
    reference = encoder.embed(_wave(promoter)) if promoter else None
    result = analyze(_wave(path), encoder, reference)
    rules = VoiceRules.for_encoder(encoder)  # a project's own calibration needs its database
    flags = [flag.kind.value for flag in recording_flags(result, rules)]
    report = {
        "voices": len(result.voices),
        "speech_seconds": round(result.speech_seconds, 2),
        "segments": [{"start": s, "end": e, "speaker": result.voices[i].role} for s, e, i in result.segments],
        "flags": flags,
    }
    typer.echo(json.dumps(report) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))


@voice_app.command("compare")
def voice_compare(
    first: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    second: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Are two recordings the same speaker?"""
    import json

    encoder = _encoder(_settings())
    score = float(encoder.embed(_wave(first)) @ encoder.embed(_wave(second)))
    report = {
        "score": round(score, 4),
        "threshold": encoder.same_speaker_threshold,
        "same_speaker": score >= encoder.same_speaker_threshold,
    }
    typer.echo(json.dumps(report) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))


@voice_app.command("worker")
def voice_worker() -> None:
    """Analyse recordings as they arrive (run one or more beside the bot; safe to stop and restart)."""
    import signal

    from bot.migrate import upgrade
    from jobs.voice import run_worker
    from services.db import create_engine, create_session_factory
    from services.storage import LocalAudioStore

    settings = _settings()
    upgrade(settings.database_url)

    async def go() -> None:
        engine = create_engine(settings.database_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        encoder = await asyncio.to_thread(lambda: _encoder(settings, worker=True))
        try:
            await run_worker(
                create_session_factory(engine), LocalAudioStore(settings.storage_root), encoder, stop
            )
        finally:
            await engine.dispose()

    asyncio.run(go())


@voice_app.command("thresholds")
def voice_thresholds(
    project_id: int,
    backend: Annotated[str, typer.Option(help="speechbrain or resemblyzer")] = "resemblyzer",
    same_speaker: Annotated[float | None, typer.Option(min=-1.0, max=1.0)] = None,
    repeat: Annotated[float | None, typer.Option(min=-1.0, max=1.0, help="repeated-customer cosine")] = None,
    duplicate: Annotated[float | None, typer.Option(min=-1.0, max=1.0, help="near-duplicate cosine")] = None,
    repeat_min_contacts: Annotated[int | None, typer.Option(min=1)] = None,
    repeat_window_days: Annotated[int | None, typer.Option(min=1)] = None,
    min_speech_seconds: Annotated[float | None, typer.Option(min=0.0)] = None,
) -> None:
    """Show a project's voice rules for a backend, changing the ones given (cosines are per backend)."""
    from services import projects
    from services.voice.encoder import ResemblyzerEncoder, SpeakerEncoder, SpeechBrainEncoder
    from services.voice.flags import VoiceRules

    if backend not in ("speechbrain", "resemblyzer"):
        typer.echo("error: --backend is speechbrain or resemblyzer", err=True)
        raise typer.Exit(2)
    per_backend = {"same_speaker": same_speaker, "repeat_same_speaker": repeat, "near_duplicate": duplicate}
    shared = {
        "repeat_min_contacts": repeat_min_contacts,
        "repeat_window_days": repeat_window_days,
        "min_speech_seconds": min_speech_seconds,
    }
    # The encoder classes carry their default thresholds as class attributes: no model needs loading.
    defaults = cast("SpeakerEncoder", SpeechBrainEncoder if backend == "speechbrain" else ResemblyzerEncoder)

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        calibration = dict(project.voice_thresholds or {})
        calibration[backend] = {
            **calibration.get(backend, {}),
            **{k: v for k, v in per_backend.items() if v is not None},
        }
        calibration.update({k: v for k, v in shared.items() if v is not None})
        project.voice_thresholds = calibration  # a new dict, so the JSON column is written
        rules = VoiceRules.for_project(project, defaults)
        return "\n".join(f"{name}: {value}" for name, value in vars(rules).items())

    typer.echo(_run_admin(go))


@voice_app.command("fetch-model")
def voice_fetch_model(
    source: Annotated[str | None, typer.Option(help="hub id or local directory (VOICE_MODEL_SOURCE)")] = None,
) -> None:
    """Copy the SpeechBrain model into VOICE_MODEL_DIR (needs the hub, once); workers then load it from there."""
    from services.voice.encoder import SpeechBrainEncoder, fetch_speechbrain_model

    settings = _settings()
    directory = fetch_speechbrain_model(settings.voice_model_dir, source or settings.voice_model_source)
    encoder = SpeechBrainEncoder(directory, precision=settings.voice_precision)  # proves it loads offline
    typer.echo(f"{encoder.name} model ready in {directory} ({encoder.dim}-dimensional voiceprints)")


@voice_app.command("eval")
def voice_eval(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    project_id: Annotated[
        int | None, typer.Option("--project", help="write the threshold into this project's calibration")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """EER and the threshold at 1% false accepts on labelled speech (LibriSpeech layout: one folder per
    speaker); with --project, that threshold becomes the project's same-speaker threshold for this backend."""
    import datetime as dt
    import json

    from services.voice.evaluation import evaluate

    settings = _settings()
    encoder = _encoder(settings)

    def progress(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            typer.echo(f"embedded {done}/{total}", err=True)

    try:
        result = evaluate(folder, encoder, _wave, progress)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    report = {
        "backend": encoder.name,
        "eer": round(result.eer, 4),
        "eer_threshold": round(result.eer_threshold, 4),
        "threshold_at_1pct_far": round(result.threshold_at_1pct_far, 4),
        "speakers": result.speakers,
        "files": result.files,
        "same_trials": result.same_trials,
        "different_trials": result.different_trials,
    }
    if project_id is not None:
        from services import projects

        async def go(session: AsyncSession) -> str:
            project = await projects.get_project(session, project_id)
            if project is None:
                raise ValueError(f"no project {project_id}")
            calibration = dict(project.voice_thresholds or {})
            backend = dict(calibration.get(encoder.name, {}))
            backend.update(
                same_speaker=report["threshold_at_1pct_far"],
                eer=report["eer"],
                measured_on=str(folder),
                measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            )
            calibration[encoder.name] = backend
            project.voice_thresholds = calibration  # a new dict, so the JSON column is written
            return f"project #{project_id}: {encoder.name} same-speaker threshold {backend['same_speaker']}"

        report["saved"] = _run_admin(go)
    typer.echo(json.dumps(report) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))


def main() -> None:
    app()
