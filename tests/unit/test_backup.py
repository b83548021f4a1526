"""`bereik backup` and `bereik restore`: one archive brings the hoppers, the users, the
secrets (the phones' passwords) and the recordings back on a fresh instance."""

from __future__ import annotations

import asyncio
import stat
import tarfile
from pathlib import Path

import pytest

from bereik import backup as backup_module
from bereik.cli import main
from cti.hoppers.service import create_hopper
from cti.services import build_services, open_services
from cti.store.db import create_engine, migrate_async, sessions
from cti.users.service import create_user
from dialplan.config import load
from dialplan.render import load_secrets

TEAM = """
[[phones]]
extension = "3001"

[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
mailbox = "vergunningen@gemeente.example"
"""


def machine(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A configuration with its database and instance directory under `root`."""
    root.mkdir()
    config = root / "bereik.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{root}/bereik.db"\n' + TEAM)
    return config, root / "instance"


async def exchange_with_work(config_path: Path, home: Path) -> tuple[int, str]:
    """One open hopper, a user, the generated secrets, a recording and an announcement's
    audio: what a running exchange has. The hopper's id and 3001's SIP password."""
    config = load(config_path)
    await migrate_async(config.database.url)
    engine = create_engine(config.database.url)
    services = build_services(config, sessions(engine), home=home)
    try:
        hopper = await create_hopper(
            services, team_id="vergunningen", caller="0612345678", reason="no_answer"
        )
        async with services.sessions() as session:
            await create_user(session, "carla", "een-lang-wachtwoord", "member", "vergunningen")
            await session.commit()
    finally:
        await engine.dispose()
    secret = load_secrets(home / "secrets.json", config).phones["3001"]
    (home / "recordings").mkdir(parents=True)
    (home / "recordings" / "question-ab.wav").write_bytes(b"RIFF question")
    (home / "sounds" / "announcements").mkdir(parents=True)
    (home / "sounds" / "announcements" / "tts-1.wav").write_bytes(b"RIFF news")
    (home / "sounds" / "prompts").mkdir(parents=True)
    (home / "sounds" / "prompts" / "made-again.wav").write_bytes(b"RIFF prompt")
    return hopper.id, secret


async def test_backup_then_restore_on_a_fresh_machine_brings_the_work_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_config, old_home = machine(tmp_path / "old", monkeypatch)
    new_config, new_home = machine(tmp_path / "new", monkeypatch)
    homes = {str(old_config): old_home, str(new_config): new_home}
    current: list[Path] = [old_config]
    monkeypatch.setattr(backup_module, "instance_dir", lambda _config: homes[str(current[0])])
    hopper_id, secret = await exchange_with_work(old_config, old_home)

    archive = tmp_path / "nightly.tar.gz"
    assert (
        await asyncio.to_thread(
            main, ["backup", "--config", str(old_config), "--out", str(archive)]
        )
        == 0
    )
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # numbers and secrets inside
    with tarfile.open(archive) as opened:
        names = set(opened.getnames())
    assert {
        "manifest.json",
        "database.sqlite",
        "config.toml",
        "instance/secrets.json",
        "instance/recordings/question-ab.wav",
        "instance/sounds/announcements/tts-1.wav",
    } <= names
    assert not [name for name in names if "prompts" in name]  # made again at start-up

    # Without a configuration the archive's is written; its database.url names the old
    # machine's file, which here (one disk for both) still holds work: refused, kept.
    new_config.unlink()
    current[0] = new_config
    refused = await asyncio.to_thread(main, ["restore", str(archive), "--config", str(new_config)])
    assert refused == 1
    assert load(new_config).database.url == f"sqlite:///{tmp_path}/old/bereik.db"
    # The new machine's own database: restored.
    new_config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/new/bereik.db"\n' + TEAM)
    homes[str(new_config)] = new_home
    restored = await asyncio.to_thread(main, ["restore", str(archive), "--config", str(new_config)])
    assert restored == 0

    async with open_services(load(new_config)) as services:
        async with services.sessions() as session:
            from sqlalchemy import text

            hoppers = (await session.execute(text("SELECT id, status FROM hoppers"))).all()
            users = (await session.execute(text("SELECT name FROM users"))).all()
    assert hoppers == [(hopper_id, "open")]
    assert users == [("carla",)]
    assert load_secrets(new_home / "secrets.json", load(new_config)).phones["3001"] == secret
    question = new_home / "recordings" / "question-ab.wav"
    assert question.read_bytes() == b"RIFF question"
    assert stat.S_IMODE(question.stat().st_mode) == 0o600

    # The new machine now has work of its own: a second restore would overwrite it.
    again = await asyncio.to_thread(main, ["restore", str(archive), "--config", str(new_config)])
    assert again == 1
    forced = ["restore", str(archive), "--config", str(new_config), "--force"]
    assert await asyncio.to_thread(main, forced) == 0


def test_a_damaged_archive_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    import io
    import json

    with tarfile.open(archive, "w:gz") as opened:
        manifest = json.dumps({"format": 1, "database": "sqlite", "files": {"x": "00"}}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        opened.addfile(info, io.BytesIO(manifest))
        info = tarfile.TarInfo("x")
        info.size = 3
        opened.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(backup_module.BackupError, match="x is damaged"):
        backup_module.restore(archive, tmp_path / "bereik.toml")
