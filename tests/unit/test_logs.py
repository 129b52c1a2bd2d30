"""The log's tracebacks: plain, without the frames' locals (a person's words, settings, whole updates)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _log_a_failure(tmp_path: Path, fmt: str) -> str:
    """A fresh process, set up as the bot starts (bot.logs.setup_logging), logs an exception from our code
    (structlog) and one from a library (stdlib logging, as aiogram logs); its stderr."""
    program = textwrap.dedent(
        f"""
        import logging

        import structlog
        from bot.logs import setup_logging

        setup_logging("INFO", {fmt!r})
        log = structlog.get_logger("probe")

        def handler(text):
            secret_in_a_local = "PERSONAL-" + text
            return 1 / 0

        try:
            handler("words of a customer")
        except ZeroDivisionError:
            log.exception("handler_failed", update_id=7)
        try:
            handler("said to aiogram")
        except ZeroDivisionError:
            logging.getLogger("aiogram.event").exception("Cause exception while process update")
        """
    )
    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "probe.py"
    script.write_text(program, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    return done.stderr


def test_console_tracebacks_are_plain_and_keep_no_locals(tmp_path: Path) -> None:
    out = _log_a_failure(tmp_path, "console")
    assert "handler_failed" in out and "update_id=7" in out
    assert "Traceback (most recent call last)" in out
    assert "ZeroDivisionError: division by zero" in out
    assert "return 1 / 0" in out  # the failing line is shown
    assert "Cause exception while process update" in out  # a library's log (stdlib logging) too
    assert out.count("ZeroDivisionError: division by zero") == 2
    assert "PERSONAL-" not in out  # the frames' locals are not
    assert "╭" not in out  # rich's boxes are not used


def test_json_tracebacks_keep_no_locals(tmp_path: Path) -> None:
    out = _log_a_failure(tmp_path, "json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["event"] for r in records] == ["handler_failed", "Cause exception while process update"]
    for record in records:  # each with its whole traceback as text, ours and the library's
        assert record["exception"].startswith("Traceback (most recent call last)")
        assert record["exception"].rstrip().endswith("ZeroDivisionError: division by zero")
    assert "PERSONAL-" not in out
