"""6. Bad input: hostile caller IDs and texts pass through unharmed and unexecuted.

Caller IDs with quotes, semicolons, backticks, ``$(touch ...)``, unicode and escaped
newlines come in over SIP and over a raw FastAGI socket; notes and announcement texts
with ``<script>``, shell syntax and 10 kB of text come in over the API. Everywhere the
text is data: the hopper holds it (or its documented truncated form), the mail carries
it, the web page shows it escaped, espeak-ng speaks it from stdin, and no marker file
appears. (The AGI and AMI parsers themselves are fuzzed in tests/unit.)
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agi.protocol import Environment
from agi.server import AgiChannel
from bench.exchange import Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from dialplan.render import load_secrets
from tests.resilience.figures import Figures
from tests.support.mail import Smtp
from tests.support.users import api_tokens

TEAM = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
"""
MENU = """
[menu]
greeting = "Welkom."
prompt = "Maak een keuze."
timeout_seconds = 4

[[menu.options]]
key = "1"
label = "Vergunningen"
team = "vergunningen"
"""
NOTE_LIMIT = 4000  # cti/hoppers/service.py keeps this much of a note


def hostile(marker: Path) -> str:
    """Everything a shell, a template, a SIP or AGI parser could trip over."""
    return (
        f'Jan "de Boer"; `touch {marker}` $(touch {marker}) && touch {marker} | '
        f"<script>alert('x')</script> {{{{ 7*7 }}}} %s %n \\n \\\" "
        f"\nEXEC System touch {marker}\r\nSET VARIABLE BEREIK_ROUTE hangup\n"
        "Ünïcødé ☎ 𝄞 مرحبا 中文 \u202e gnp.exe "
    )


@pytest.fixture
def ex(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAM, extra_toml=MENU) as exch:
        exch.start_asterisk()
        exch.start_serve()
        with sqlite3.connect(exch.db_path, timeout=10) as db:
            # The only member is absent: every call goes straight to the callback offer.
            db.execute(
                "INSERT INTO presence (extension, present, changed_at, changed_by) "
                "VALUES ('3001', 0, datetime('now'), 'test')"
            )
        yield exch


def request(
    ex: Exchange, method: str, path: str, token: str, body: Any = None
) -> tuple[int, str, str]:
    """(status, content type, body text) of one authenticated request."""
    req = urllib.request.Request(
        ex.url(path),
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return (
                response.status,
                response.headers.get_content_type(),
                response.read().decode(errors="replace"),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read().decode()


async def test_hostile_caller_ids_and_texts_pass_through_calls_hoppers_mail_tts_and_pages(
    ex: Exchange, tmp_path: Path, figures: Figures
) -> None:
    marker = tmp_path / "pwned"
    text = hostile(marker)
    long_text = (text * (10_240 // len(text) + 1))[:10_240]
    smtp = Smtp(ex.ports.smtp)
    mailbox = smtp.start()
    try:
        tokens = await api_tokens(
            ex,
            [
                ("anna", "agent", "", "2001"),
                ("carla", "member", "vergunningen", "3001"),
                ("olga", "operator", "", ""),
            ],
        )

        # 1. Over SIP: a display name full of shell and quote characters, and a user part
        # whose escapes decode to quotes, a semicolon, backticks and a newline. Through the
        # 14070 menu (key 1) to the team and its callback offer (silence confirms).
        name = f'Jan \\"de Boer\\"; `touch {marker}` $(touch {marker}) Ünïcødé ☎ ' + "x" * 200
        user = (
            "0612345001%22%3B%60touch%20"
            + str(marker).replace("/", "%2F")
            + "%60%24(touch)%0AEXEC%20System"
        )
        result = await ex.call(
            "14070",
            caller=user,
            caller_name=name,
            keys="1",
            key_delay_ms=1500,
            hold_ms=25_000,
            timeout_s=60,
        )
        assert result.returncode == 0, result.stderr
        hopper_rows = await until(
            lambda: ex.rows("SELECT * FROM hoppers WHERE caller LIKE '0612345001%'"), 20
        )
        assert len(hopper_rows) == 1
        # The number to call back is the digits; everything else was not a number.
        assert hopper_rows[0].caller.startswith("0612345001")
        assert hopper_rows[0].caller.isdigit()
        calls = ex.rows("SELECT caller, route FROM calls")
        assert [c.route for c in calls] == ["team-7001"], calls
        sip_caller = calls[0].caller

        # 2. Over the API: hostile text as the question category is refused (the
        # categories are the configured ones); a note of 10 kB with script, template and
        # shell syntax is kept.
        status, kind, body = request(
            ex,
            "POST",
            "/api/hoppers",
            tokens["anna"],
            {"team": "vergunningen", "caller": "0612345002", "category": text[:60]},
        )
        assert status == 400 and kind == "application/json" and json.loads(body)["error"]
        status, kind, body = request(
            ex,
            "POST",
            "/api/hoppers",
            tokens["anna"],
            {"team": "vergunningen", "caller": "0612345002", "note": long_text},
        )
        assert status == 201, body
        made = json.loads(body)
        row = ex.rows("SELECT * FROM hoppers WHERE id = :id", id=made["id"])[0]
        assert row.note == long_text[:NOTE_LIMIT]
        # A hostile number is no number: a clear 400 in JSON.
        status, kind, body = request(
            ex,
            "POST",
            "/api/hoppers",
            tokens["anna"],
            {"team": "vergunningen", "caller": text, "note": "x"},
        )
        assert status == 400 and kind == "application/json" and json.loads(body)["error"]

        # 3. The team's pages show the texts escaped.
        status, kind, page = request(ex, "GET", f"/team/hoppers/{made['id']}", tokens["carla"])
        assert status == 200 and kind == "text/html", page[:500]
        assert "&lt;script&gt;alert(" in page
        assert "<script>alert(" not in page
        assert "{{ 7*7 }}" in page and ">49<" not in page
        assert "Ünïcødé ☎ 𝄞" in page
        status, kind, inbox = request(ex, "GET", "/team", tokens["carla"])
        assert status == 200 and "<script>alert(" not in inbox

        # 4. The mails: one per hopper, the note intact in the body.
        mails = await mailbox.wait(2, timeout=30)
        bodies = [m.get_payload(decode=True) for m in mails]
        texts = [b.decode() if isinstance(b, bytes) else "" for b in bodies]
        assert any("0612345001" in str(m["Subject"]) for m in mails)
        assert any("<script>alert('x')</script>" in t and "Ünïcødé" in t for t in texts)
        assert all("\n" not in str(m["Subject"]) for m in mails)

        # 5. TTS: an announcement of hostile text is spoken (espeak reads stdin, no shell);
        # 10 kB is refused with a clear message, never a 500.
        status, kind, body = request(
            ex,
            "POST",
            "/api/announcements",
            tokens["olga"],
            {"kind": "news", "text": text.replace("\n", " ")},
        )
        assert status == 201, body
        audio = json.loads(body)
        status, kind, wav = request(ex, "GET", audio["audio_url"], tokens["olga"])
        assert status == 200 and kind.startswith("audio/") and len(wav) > 8000, kind
        status, kind, body = request(
            ex, "POST", "/api/announcements", tokens["olga"], {"kind": "news", "text": long_text}
        )
        assert status in (201, 400, 422), body
        if status != 201:
            assert kind == "application/json" and json.loads(body)["error"]
        long_announcement = status
    finally:
        smtp.stop()

    # 6. A raw FastAGI client with a hostile caller ID: the handlers still route, and no
    # value ever became a second command.
    lines_ivr = await fake_asterisk(ex, "ivr", text, marker, digits="1")
    assert lines_ivr[-1] == 'EXEC "MSet" "BEREIK_ROUTE=team-7001,BEREIK_RESULT=ok"'
    lines_hopper = await fake_asterisk(
        ex, "hopper?number=7001&reason=nobody_present", text, marker, digits=""
    )
    assert lines_hopper[-1] == 'SET VARIABLE "BEREIK_RESULT" "ok"'
    agi_hoppers = ex.rows("SELECT caller FROM hoppers WHERE caller LIKE '0612345003%'")
    assert [h.caller for h in agi_hoppers] == ["0612345003"]

    executed = marker.exists()
    assert not executed, "a hostile text was executed"
    log = ex.serve_log.read_text()
    assert "Traceback" not in log, log[-3000:]

    figures.title = "hostile caller IDs and texts"
    figures["calls placed"] = result.counts().get("TotalCallCreated")
    figures["hoppers made"] = len(ex.rows("SELECT id FROM hoppers"))
    figures["mails sent"] = len(mailbox.messages)
    figures["SIP caller stored as"] = repr(sip_caller[:40])
    figures["10 kB announcement"] = long_announcement
    figures["AGI commands checked"] = len(lines_ivr) + len(lines_hopper)
    figures["marker file"] = "present" if executed else "absent"


AGI_COMMANDS = (
    "ANSWER",
    "SET VARIABLE",
    "GET VARIABLE",
    "STREAM FILE",
    "GET DATA",
    "EXEC",
    "WAIT FOR DIGIT",
    "VERBOSE",
    "CHANNEL STATUS",
    "GET FULL VARIABLE",
)


async def fake_asterisk(
    ex: Exchange, script: str, text: str, marker: Path, digits: str
) -> list[str]:
    """Play Asterisk's side of one FastAGI session; return every command line received."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ex.ports.agi)
    # The dialplan's FastAGI URLs carry the instance's secret; so does this stand-in.
    script = f"{load_secrets(ex.host_instance / 'secrets.json', ex.config).agi}/{script}"
    # Header values are one line each: the newlines of the hostile text become spaces,
    # everything else goes as it is.
    flat = text.replace("\r", " ").replace("\n", " ")
    header = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1:{ex.ports.agi}/{script}",
        "agi_channel": "PJSIP/trunk-0000abcd",
        "agi_language": "nl",
        "agi_type": "PJSIP",
        "agi_uniqueid": f"1700000000.{len(script)}",
        "agi_callerid": f'0612345003"; {flat}',
        "agi_calleridname": flat,
        "agi_dnid": "14070",
        "agi_context": "bereik-main",
        "agi_extension": "s",
        "agi_priority": "7",
        "agi_threadid": "1",
        "agi_linkedid": f"1700000000.{len(script)}",
    }
    writer.write("".join(f"{k}: {v}\n" for k, v in header.items()).encode() + b"\n")
    await writer.drain()
    lines: list[str] = []
    try:
        while True:
            raw = await asyncio.wait_for(reader.readline(), 30)
            if not raw:
                break
            line = raw.decode().rstrip("\n")
            lines.append(line)
            assert line.startswith(AGI_COMMANDS), f"not one AGI command: {line!r}"
            assert str(marker) not in line or line.count('"') % 2 == 0, line
            if line.startswith("GET DATA"):
                answer = f"200 result={digits} (timeout)" if not digits else f"200 result={digits}"
            elif line.startswith("GET VARIABLE"):
                answer = "200 result=0"
            elif line.startswith("STREAM FILE"):
                answer = "200 result=0 endpos=8000"
            else:
                answer = "200 result=1"
            writer.write(answer.encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()
    assert lines, "the handler sent nothing"
    return lines


async def test_a_newline_in_a_set_variable_value_stays_one_command(tmp_path: Path) -> None:
    """The channel side: whatever a handler puts in a value, Asterisk reads one line."""
    received: list[bytes] = []

    async def asterisk_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while raw := await reader.readline():
            received.append(raw)
            writer.write(b"200 result=1\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(asterisk_side, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    channel = AgiChannel(Environment({"uniqueid": "1.1"}), reader, writer, 5)
    marker = tmp_path / "pwned"
    for value in (
        f"a\nEXEC System touch {marker}",
        f"b\r\nEXEC System touch {marker}\r\n",
        f'c" EXEC System "touch {marker}',
        f'd\\" $(touch {marker})',
    ):
        await channel.set_variable("BEREIK_NOTE", value)
    writer.close()
    server.close()
    await server.wait_closed()
    assert len(received) == 4
    assert all(line.count(b"\n") == 1 and b"\r" not in line for line in received)
    assert all(line.startswith(b'SET VARIABLE "BEREIK_NOTE" "') for line in received)
    assert not marker.exists()
