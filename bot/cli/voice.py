"""`fieldcheck voice`: analyse and compare recordings, run the analysis worker, evaluate and calibrate."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import structlog
import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.common import FileArgument, PromoterOption, load_settings, run_admin, run_database
from infra.settings import Settings
from infra.storage import create_audio_store
from services import projects

if TYPE_CHECKING:
    from infra.db import Database

voice_app = typer.Typer(
    help="Speaker verification: analyse, compare, run the analysis worker.", no_args_is_help=True
)


def _encoder(settings: Settings, *, worker: bool = False):  # type: ignore[no-untyped-def]
    """One-off commands run SpeechBrain as it is: converting or compiling pays off only over many recordings."""
    from services.voice.encoder import load_encoder  # noqa: PLC0415  keeps the CLI's start fast

    return load_encoder(
        settings.voice_backend,
        settings.voice_model_dir,
        settings.voice_precision,
        runtime=settings.voice_runtime if worker else "torch",
        diarisation=settings.voice_diarisation,
    )


def _wave(path: Path):  # type: ignore[no-untyped-def]
    from services.audio import decode  # noqa: PLC0415  keeps the CLI's start fast
    from services.voice.analysis import to_float  # noqa: PLC0415  keeps the CLI's start fast

    return to_float(decode(path.read_bytes()))


@voice_app.command("analyze")
def voice_analyze(
    path: FileArgument,
    promoter: PromoterOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Voices, speech and segments of one recording, and the flags it raises on its own, each with how
    sure it is ("likely", or "unsure": listen carefully) and the numbers it rests on."""
    from services.voice.analysis import analyze, enrolment_embedding  # noqa: PLC0415  keeps the CLI's start fast
    from services.voice.flags import VoiceRules, recording_flags  # noqa: PLC0415  keeps the CLI's start fast

    encoder = _encoder(load_settings())
    reference = enrolment_embedding(encoder, _wave(promoter))[0] if promoter else None
    result = analyze(_wave(path), encoder, reference)
    rules = VoiceRules.for_encoder(encoder)  # a project's own calibration needs its database
    flags = [
        {
            "flag": flag.kind.value,
            "score": flag.score,
            **{
                k: v for k, v in flag.details.stored().items() if k in ("confidence", "why", "speech_seconds")
            },
        }
        for flag in recording_flags(result, rules)
    ]
    report = {
        "backend": encoder.name,
        "voices": len(result.voices),
        "speech_seconds": round(result.speech_seconds, 2),
        "p_one_voice": None if result.p_one_voice is None else round(result.p_one_voice, 3),
        "p_self_recorded": None if result.p_self_recorded is None else round(result.p_self_recorded, 3),
        "calibrated": result.calibrated,
        "evidence": result.evidence,
        "voice_seconds": [{"speaker": v.role, "seconds": v.speech_seconds} for v in result.voices],
        "overlap_seconds": result.overlap_seconds,
        "segments": [{"start": s, "end": e, "speaker": result.voices[i].role} for s, e, i in result.segments],
        "flags": flags,
    }
    typer.echo(json.dumps(report) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))


@voice_app.command("compare")
def voice_compare(
    first: FileArgument,
    second: FileArgument,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Are two recordings the same speaker?"""
    encoder = _encoder(load_settings())
    score = float(encoder.embed(_wave(first)) @ encoder.embed(_wave(second)))
    report = {
        "score": round(score, 4),
        "threshold": encoder.same_speaker_threshold,
        "same_speaker": score >= encoder.same_speaker_threshold,
    }
    typer.echo(json.dumps(report) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))


def _speech_recognizer(settings: Settings):  # type: ignore[no-untyped-def]
    """The speech recogniser for projects that turned speech analysis on; None (logged) where its model or
    packages are missing: voice analysis goes on without it."""
    from bot.cli.speech import recognizer_for  # noqa: PLC0415  import cycle: bot.cli.speech imports this module

    try:
        return recognizer_for(settings)
    except Exception as exc:  # ImportError without the speech extra, ModelUnavailable without the model
        structlog.get_logger(__name__).warning(
            "speech_recognizer_unavailable", backend=settings.speech_backend, error=repr(exc)
        )
        return None


@voice_app.command("worker")
def voice_worker() -> None:
    """Analyse recordings as they arrive (run one or more beside the bot; safe to stop and restart)."""
    from jobs.voice import run_worker  # noqa: PLC0415  keeps the CLI's start fast

    settings = load_settings()

    async def go(db: Database) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        encoder = await asyncio.to_thread(lambda: _encoder(settings, worker=True))
        recognizer = await asyncio.to_thread(_speech_recognizer, settings)
        stale = dt.timedelta(seconds=settings.voice_stale_seconds)
        await run_worker(
            db.sessions,
            create_audio_store(settings),
            encoder,
            stop,
            stale=stale,
            recognizer=recognizer,
        )

    run_database(go, settings)


@voice_app.command("reembed")
def voice_reembed(
    limit: Annotated[int | None, typer.Option(min=1, help="stop after this many recordings")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Give every stored recording a voiceprint of the current backend (after VOICE_BACKEND changed).

    Prints of different backends are never compared, so until this has run, repeats and resends are only
    found among recordings analysed since the change. Resumable: stop it at any time and run it again."""
    from jobs.voice_reembed import ReembedReport, reembed  # noqa: PLC0415  keeps the CLI's start fast

    settings = load_settings()

    def progress(report: ReembedReport) -> None:
        handled = report.done + report.missing + report.failed
        typer.echo(f"reembed {report.backend}: {handled}/{report.todo} ({report.seconds:.0f} s)", err=True)

    async def go(db: Database) -> ReembedReport:
        encoder = await asyncio.to_thread(lambda: _encoder(settings, worker=True))
        return await reembed(
            db.sessions,
            create_audio_store(settings),
            encoder,
            limit=limit,
            progress=progress,
        )

    result = vars(run_database(go, settings))
    typer.echo(json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    if result["failed"]:
        raise typer.Exit(1)


@voice_app.command("thresholds")
def voice_thresholds(
    project_id: int,
    backend: Annotated[
        str | None, typer.Option(help="campplus, speechbrain or resemblyzer (default: the one in use)")
    ] = None,
    same_speaker: Annotated[float | None, typer.Option(min=-1.0, max=1.0)] = None,
    repeat: Annotated[float | None, typer.Option(min=-1.0, max=1.0, help="repeated-customer cosine")] = None,
    duplicate: Annotated[float | None, typer.Option(min=-1.0, max=1.0, help="near-duplicate cosine")] = None,
    repeat_min_contacts: Annotated[int | None, typer.Option(min=1)] = None,
    repeat_window_days: Annotated[int | None, typer.Option(min=1)] = None,
    min_speech_seconds: Annotated[float | None, typer.Option(min=0.0)] = None,
    repeat_snorm: Annotated[
        float | None, typer.Option(help="repeated-customer threshold on s-normalised scores")
    ] = None,
    sure: Annotated[
        float | None, typer.Option(min=0.5, max=1.0, help="probability stated as a likely self-recording")
    ] = None,
    listen: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help='probability from which "listen carefully" is shown'),
    ] = None,
) -> None:
    """Show a project's voice rules for a backend, changing the ones given (cosines are per backend)."""
    from services.voice.encoder import BACKENDS, thresholds_of  # noqa: PLC0415  keeps the CLI's start fast
    from services.voice.flags import VoiceRules  # noqa: PLC0415  keeps the CLI's start fast
    from services.voice.probability import for_project, packaged  # noqa: PLC0415  keeps the CLI's start fast

    settings = load_settings()
    backend = backend or _backend_in_use(settings)
    if backend not in BACKENDS:
        typer.echo(f"error: --backend is one of {', '.join(BACKENDS)}", err=True)
        raise typer.Exit(2)
    per_backend = {
        "same_speaker": same_speaker,
        "repeat_same_speaker": repeat,
        "near_duplicate": duplicate,
        "repeat_snorm": repeat_snorm,
    }
    shared = {
        "repeat_min_contacts": repeat_min_contacts,
        "repeat_window_days": repeat_window_days,
        "min_speech_seconds": min_speech_seconds,
        "sure": sure,
        "listen": listen,
    }
    defaults = thresholds_of(backend, settings.voice_diarisation)

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
        refit = ((project.voice_thresholds or {}).get(backend) or {}).get("calibration")
        own = for_project(backend, project.voice_thresholds) if refit else packaged(defaults.calibration_name)
        lines = [f"backend: {backend}", *(f"{name}: {value}" for name, value in vars(rules).items())]
        lines.append(f"calibration: {own.source if own else 'none (self-recording flags stay unsure)'}")
        return "\n".join(lines)

    typer.echo(run_admin(go))


@voice_app.command("fetch-model")
def voice_fetch_model(
    source: Annotated[str | None, typer.Option(help="hub id or local directory (VOICE_MODEL_SOURCE)")] = None,
    backend: Annotated[str, typer.Option(help="speechbrain (ECAPA) or campplus (CAM++)")] = "speechbrain",
) -> None:
    """Copy a model into VOICE_MODEL_DIR (needs the hub, once); workers then load it from there. CAM++ comes
    from ModelScope (`iic/speech_campplus_sv_zh_en_16k-common_advanced`); its wheel copy needs no fetch."""
    from services.voice.encoder import (  # noqa: PLC0415  keeps the CLI's start fast
        CAMPPLUS_SOURCE,
        CampplusEncoder,
        SpeakerEncoder,
        SpeechBrainEncoder,
        fetch_campplus_model,
        fetch_speechbrain_model,
    )

    settings = load_settings()
    encoder: SpeakerEncoder
    if backend == "campplus":
        weights = fetch_campplus_model(settings.voice_model_dir, source or CAMPPLUS_SOURCE)
        encoder = CampplusEncoder(weights)  # proves it loads offline
        directory = weights.parent
    elif backend == "speechbrain":
        directory = fetch_speechbrain_model(settings.voice_model_dir, source or settings.voice_model_source)
        encoder = SpeechBrainEncoder(directory, precision=settings.voice_precision)  # proves it loads offline
    else:
        typer.echo("error: --backend is speechbrain or campplus", err=True)
        raise typer.Exit(2)
    typer.echo(f"{encoder.name} model ready in {directory} ({encoder.dim}-dimensional voiceprints)")


@voice_app.command("eval")
def voice_eval(
    folder: Annotated[
        Path | None,
        typer.Argument(exists=True, file_okay=False, help="labelled speech, one folder per speaker"),
    ] = None,
    project_id: Annotated[
        int | None, typer.Option("--project", help="write the result into this project's calibration")
    ] = None,
    dialogues: Annotated[
        Path | None,
        typer.Option(
            exists=True, file_okay=False, help="a field set: <uri>.ogg + .rttm + .json, enrol-<promoter>.ogg"
        ),
    ] = None,
    fit: Annotated[
        bool, typer.Option(help="with --dialogues: fit the self-recording calibration on the set")
    ] = False,
    fit_to: Annotated[Path | None, typer.Option(help="with --fit: write the calibration JSON here")] = None,
    from_reviews: Annotated[
        int | None, typer.Option(help="refit this project's calibration from its reviewed contacts")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Measure the voice checks. FOLDER: EER and the threshold at 1% false accepts (with --project, that
    threshold becomes the project's same-speaker threshold). --dialogues: voice counting, DER/JER, false
    alarms and catches of the self-recording judgement, per condition (--fit: fit its calibration).
    --from-reviews: refit a project's calibration from its own reviewers' verdicts."""
    modes = sum(x is not None for x in (folder, dialogues, from_reviews))
    if modes != 1:
        typer.echo("error: give one of FOLDER, --dialogues DIR or --from-reviews PROJECT", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    if from_reviews is not None:
        typer.echo(_refit_from_reviews(settings, from_reviews, as_json))
        return
    encoder = _encoder(settings)

    verb = "analysed" if dialogues is not None else "embedded"

    def progress(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            typer.echo(f"{verb} {done}/{total}", err=True)

    if dialogues is not None:
        from services.voice.probability import for_project  # noqa: PLC0415  keeps the CLI's start fast
        from voicelab import field_eval  # noqa: PLC0415  keeps the CLI's start fast

        calibration = None if fit else for_project(encoder.name, None)
        rows = field_eval.score_set(dialogues, encoder, calibration, progress)
        if not rows:
            typer.echo(f"error: {dialogues} holds no <uri>.json recordings", err=True)
            raise typer.Exit(2)
        if fit:
            fitted = field_eval.fit(rows, encoder.name, f"field set {dialogues} ({len(rows)} recordings)")
            rows = field_eval.score_set(dialogues, encoder, fitted, progress)
            if fit_to is not None:
                fit_to.write_text(json.dumps(fitted.to_json(), indent=1) + "\n")
            if project_id is not None:
                typer.echo(_save_calibration(project_id, encoder.name, fitted.to_json()), err=True)
        result = field_eval.report(rows)
        typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=1))
        return
    assert folder is not None
    typer.echo(_speaker_eval(folder, encoder, project_id, as_json, progress))


def _speaker_eval(folder: Path, encoder: Any, project_id: int | None, as_json: bool, progress: Any) -> str:
    from voicelab.evaluation import evaluate  # noqa: PLC0415  keeps the CLI's start fast

    try:
        result = evaluate(folder, encoder, _wave, progress)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    report: dict[str, Any] = {
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
        report["saved"] = _save_calibration(
            project_id,
            encoder.name,
            {
                "same_speaker": report["threshold_at_1pct_far"],
                "eer": report["eer"],
                "measured_on": str(folder),
                "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
            key=None,
        )
    return json.dumps(report) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items())


def _save_calibration(
    project_id: int, backend: str, values: dict[str, Any], key: str | None = "calibration"
) -> str:
    """Merge into a project's per-backend voice settings (`key`: under one entry, else at the top)."""

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        settings = dict(project.voice_thresholds or {})
        own = dict(settings.get(backend, {}))
        own.update({key: values} if key else values)
        settings[backend] = own
        project.voice_thresholds = settings  # a new dict, so the JSON column is written
        return f"project #{project_id}: {backend} {key or 'thresholds'} saved"

    return str(run_admin(go))


def _refit_from_reviews(settings: Settings, project_id: int, as_json: bool) -> str:
    from services.voice import quality  # noqa: PLC0415  keeps the CLI's start fast

    backend = _backend_in_use(settings)

    async def go(session: AsyncSession) -> str:
        examples = await quality.labelled_evidence(session, project_id, backend)
        fitted = quality.refit(backend, examples, project_id)
        return json.dumps(fitted.to_json())

    try:
        fitted_json = run_admin(go)
    except quality.NotEnoughReviews as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    saved = _save_calibration(project_id, backend, json.loads(fitted_json))
    result = {"backend": backend, "calibration": json.loads(fitted_json)["source"], "saved": saved}
    return json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items())


def _backend_in_use(settings: Settings) -> str:
    """The backend the workers would pick, without loading a model."""
    from services.voice.encoder import backend_in_use  # noqa: PLC0415  keeps the CLI's start fast

    return backend_in_use(settings.voice_backend, settings.voice_model_dir)


@voice_app.command("quality")
def voice_quality(
    project_id: int,
    last: Annotated[int, typer.Option(min=1, help="the project's last N reviewed contacts")] = 500,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Precision and recall of each automatic voice flag, judged by the project's own reviewers (a
    self-recording flag is confirmed by "not a real customer" or a fraud verdict; the others by fraud)."""
    from services.voice import quality  # noqa: PLC0415  keeps the CLI's start fast

    async def go(session: AsyncSession) -> str:
        return json.dumps(quality.describe(await quality.flag_quality(session, project_id, last)))

    rows = json.loads(run_admin(go))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"project #{project_id}: no reviewed contacts with voice flags yet")
        return

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.0%}"

    typer.echo(f"{'flag':40} {'flagged':>8} {'confirmed':>9} {'precision':>9} {'recall':>7}")
    for row in rows:
        typer.echo(
            f"{row['flag']:40} {row['flagged']:>8} {row['confirmed']:>9} {pct(row['precision']):>9} "
            f"{pct(row['recall']):>7}"
        )
    typer.echo(f"over {rows[0]['reviewed']} reviewed contacts")
