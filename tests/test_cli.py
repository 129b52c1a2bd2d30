"""The `fieldcheck` command as a person runs it: administration, migration, and the offline sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import PROJECT_ROOT

FIELDCHECK = [sys.executable, "-m", "bot"]


def _run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        FIELDCHECK + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


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


def test_run_without_token_plays_the_sandbox(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = _run(["run"], cli_env, tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BOT_TOKEN is not set" in result.stderr
    transcript = (tmp_path / "sandbox" / "transcript.txt").read_text(encoding="utf-8")
    assert transcript.strip() in result.stdout
    assert "Добро пожаловать! Теперь вы промоутер" in transcript  # the invite was accepted
    assert "This invite link is not valid" in transcript
    assert (tmp_path / "sandbox" / "fieldcheck.db").exists()
