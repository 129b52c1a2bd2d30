"""Structured logging: structlog for our code, stdlib (aiogram, SQLAlchemy, APScheduler) routed through it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import structlog


def console_renderer() -> structlog.dev.ConsoleRenderer:
    """Plain tracebacks, never rich's (structlog's default where rich is installed, as typer brings it):
    rich prints every frame's locals (a person's messages, whole updates, settings) into the log, and
    rendering them blocked the event loop for 17 s on one failed reply (rich 15.0)."""
    return structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)


def setup_logging(
    level: str = "INFO", fmt: str = "console", *, console_level: str | None = None, file: Path | None = None
) -> None:
    """`level` for what is kept; the terminal may show less (`console_level`) while `file` keeps it all."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else console_renderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # A library's record (aiogram's "Cause exception while process update") gets its traceback as text
        # too: without it the JSON log held only the exception's repr.
        foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    if console_level:
        handler.setLevel(console_level.upper())
    handlers = [handler]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(formatter)
        handlers.append(to_file)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
    for noisy in ("aiosqlite", "sqlalchemy.engine", "apscheduler.executors.default", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
