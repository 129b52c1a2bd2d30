"""Recordings in an S3-compatible bucket (issue #13): against a real S3 server on loopback (moto in server
mode, speaking the S3 HTTP protocol to boto3), not a mock object: the bot stores a voice note there, and
retention deletes it from there."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.settings import Settings
from infra.storage import S3AudioStore, create_audio_store
from jobs import housekeeping
from models import Audio, Contact, Project
from sandbox.harness import running_bot
from telegram_standin import StandIn
from tests.helpers import fill_default_form, join_as_promoter, seed_project

BUCKET = "fieldcheck-audio"


@pytest.fixture
def s3_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


def _objects(url: str) -> list[str]:
    listed = boto3.client("s3", endpoint_url=url).list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_the_store_keeps_content_addressed_objects(s3_url: str) -> None:
    store = S3AudioStore(BUCKET, prefix="audio/", endpoint_url=s3_url)
    key = store.put(b"voice note bytes", ".ogg")
    assert store.put(b"voice note bytes", ".ogg") == key  # the same bytes, the same key, one object
    assert _objects(s3_url) == [f"audio/{key}"] and store.exists(key)
    assert store.get(key) == b"voice note bytes"
    assert store.delete(key) and not store.exists(key) and not store.delete(key)
    with pytest.raises(ValueError, match="escapes"):
        store.get("../../etc/passwd")


async def test_the_bot_stores_recordings_in_the_bucket_and_retention_removes_them(
    s3_url: str, settings: Settings, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    on_s3 = settings.model_copy(update={"audio_store": "s3", "s3_bucket": BUCKET, "s3_endpoint_url": s3_url})
    async with running_bot(on_s3, start_scheduler=False) as runtime:
        project = await seed_project(sessions)
        promoter = await join_as_promoter(tg, sessions, project)
        await fill_default_form(tg, promoter)
        await promoter.send_voice(audio_dir / "dialogue.ogg")
        await promoter.expect("received")
        await runtime.settled()
    async with sessions() as session:
        audio = await session.scalar(select(Audio))
        assert audio is not None
    assert _objects(s3_url) == [audio.storage_key]
    assert not (settings.storage_root / audio.storage_key).exists()  # nothing on the local disk

    async with sessions() as session, session.begin():
        await session.execute(update(Project).values(retention_days=30))
        await session.execute(
            update(Contact).values(submitted_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=31))
        )
    erased = await housekeeping.purge_personal_data(sessions, create_audio_store(on_s3))
    assert erased.files == 1 and _objects(s3_url) == []
