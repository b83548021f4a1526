"""7. Security: AMI on loopback with a generated secret and least rights, SIP authenticated,
anonymous calls only from the trunk, no secret in the repository, no personal data in metrics."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
from pathlib import Path

from bench.exchange import REPO, SCENARIOS, Exchange, free_port
from tests.resilience.figures import Figures


async def ami_exchange(port: int, *lines: str, until: tuple[str, ...]) -> str:
    """Send raw AMI actions and return what Asterisk answered, once every text in `until`
    has arrived (or the connection closed). Asterisk answers a wrong secret only after a
    deliberate one-second pause, so a fixed read timeout would race it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()  # banner
    for line in lines:
        writer.write(line.encode())
    await writer.drain()
    answer = ""
    async with asyncio.timeout(30):
        while not all(text in answer for text in until):
            chunk = await reader.read(4096)
            if not chunk:
                break
            answer += chunk.decode(errors="replace")
    writer.close()
    return answer


def listening_addresses(port: int) -> set[str]:
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # LISTEN
                addresses.add(address)
    return addresses


async def test_ami_is_loopback_only_with_a_generated_secret_and_least_rights(
    kcc: Exchange, figures: Figures
) -> None:
    assert listening_addresses(kcc.ports.ami) == {"0100007F"}  # 127.0.0.1 only

    secrets_file = kcc.host_instance / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    secret = json.loads(secrets_file.read_text())["ami"]
    assert len(secret) >= 24
    tracked = subprocess.run(  # noqa: ASYNC221 - a quick local git grep
        ["git", "grep", "-l", "-F", "-e", secret], cwd=REPO, capture_output=True
    )
    assert tracked.stdout == b"", "a generated secret ended up in the repository"

    wrong = await ami_exchange(
        kcc.ports.ami,
        "Action: Login\r\nUsername: bereik\r\nSecret: guess\r\n\r\n",
        until=("\r\n\r\n",),  # the whole response block
    )
    assert "Authentication failed" in wrong

    login = f"Action: Login\r\nUsername: bereik\r\nSecret: {secret}\r\n\r\n"
    answer = await ami_exchange(
        kcc.ports.ami,
        login,
        "Action: Command\r\nActionID: cmd\r\nCommand: core stop now\r\n\r\n",
        "Action: CoreShowChannels\r\nActionID: chans\r\n\r\n",
        until=("ActionID: cmd", "CoreShowChannelsComplete"),
    )
    assert "Authentication accepted" in answer
    assert "Permission denied" in answer  # no shell-like CLI access for the CTI
    assert "CoreShowChannelsComplete" in answer  # what the listener needs still works
    assert kcc.active_channels() == 0  # and Asterisk is still running
    figures.title = "security: AMI"
    figures["wrong secret"] = "refused" if "Authentication failed" in wrong else "accepted"
    figures["Command action"] = "refused" if "Permission denied" in answer else "accepted"
    figures["CoreShowChannels"] = "answered" if "CoreShowChannelsComplete" in answer else "not"


async def sipp_once(
    exchange: Exchange, scenario: str, *extra: str, local_ip: str = "127.0.0.1"
) -> int:
    process = await asyncio.create_subprocess_exec(
        "sipp",
        f"127.0.0.1:{exchange.ports.sip}",
        "-sf",
        str(scenario),
        "-i",
        local_ip,
        "-p",
        str(free_port()),
        "-m",
        "1",
        "-timeout",
        "15s",
        "-timeout_error",
        "-nostdin",
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


async def test_phones_must_authenticate_and_strangers_cannot_call_in(
    kcc: Exchange, figures: Figures
) -> None:
    kcc.start_serve()
    register = kcc.workdir / "register.xml"
    register.write_text(
        (SCENARIOS / "register_noauth.xml").read_text().replace("@extension@", "2001")
    )
    challenged = await sipp_once(kcc, str(register))
    assert challenged == 0, "REGISTER without credentials not challenged"

    refused = await sipp_once(
        kcc, str(SCENARIOS / "refused_call.xml"), "-s", "14070", local_ip="127.0.0.2"
    )
    assert refused == 0, "a call from a non-trunk address was not refused"
    assert kcc.rows("SELECT count(*) AS n FROM calls")[0].n == 0
    figures.title = "security: SIP"
    figures["REGISTER without credentials"] = "challenged" if challenged == 0 else "accepted"
    figures["INVITE from 127.0.0.2"] = "refused" if refused == 0 else "answered"
    figures["calls recorded"] = kcc.rows("SELECT count(*) AS n FROM calls")[0].n


async def test_metrics_carry_no_phone_numbers(kcc: Exchange) -> None:
    kcc.start_serve()
    kcc.phone("2001")
    result = await kcc.call("14070", caller="0612345678", hold_ms=500)
    assert result.returncode == 0, result.stderr
    assert kcc.rows("SELECT caller FROM calls")[0].caller == "0612345678"
    metrics = kcc.http_get("/metrics")
    assert "bereik_" in metrics
    assert "612345678" not in metrics


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_secrets_and_personal_data_are_private_on_disk(
    kcc: Exchange, figures: Figures
) -> None:
    kcc.start_serve()
    kcc.phone("2001")
    result = await kcc.call("14070", caller="0612345678", hold_ms=500)
    assert result.returncode == 0, result.stderr
    etc = kcc.host_instance / "etc"
    checked = {}
    for path in [
        kcc.host_instance,
        etc,
        kcc.host_instance / "sounds",
        kcc.host_instance / "log",
        kcc.host_instance / "spool",
    ]:
        checked["instance dir" if path == kcc.host_instance else f"{path.name}/"] = mode(path)
        assert mode(path) == 0o700, path
    for name in ("manager.conf", "pjsip.conf", "extensions.conf"):
        checked[name] = mode(etc / name)
        assert mode(etc / name) == 0o600, name
    assert mode(kcc.host_instance / "secrets.json") == 0o600
    database = [
        kcc.db_path,
        *(kcc.db_path.with_name(kcc.db_path.name + s) for s in ("-wal", "-shm")),
    ]
    assert database[1].exists(), "serve runs SQLite in WAL mode"
    for path in database:
        checked[path.name] = mode(path)
        assert mode(path) == 0o600, path
    spoken = [p for p in (kcc.host_instance / "sounds").rglob("*") if p.is_file()]
    assert spoken, "serve speaks its prompts into the instance's sounds"
    # Asterisk reads them: owner and group at most, never others (0600/0640).
    assert {mode(p) for p in spoken} <= {0o600, 0o640}
    figures.title = "security: files on disk"
    for name, value in checked.items():
        figures[name] = oct(value)
    figures["spoken prompts, all 0600/0640"] = len(spoken)


async def test_fastagi_refuses_a_local_process_without_the_dialplan_secret(kcc: Exchange) -> None:
    kcc.start_serve()
    secret = json.loads((kcc.host_instance / "secrets.json").read_text())["agi"]
    assert f"/{secret}" in (kcc.host_instance / "etc" / "extensions.conf").read_text()

    async def request_without_secret() -> bool:
        """One FastAGI request as a local process would send it; True once serve says
        it refused it for the secret (right after start it may refuse for loop lag)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", kcc.ports.agi)
        writer.write(
            b"agi_network: yes\nagi_network_script: ivr\nagi_uniqueid: 1.1\n"
            b"agi_callerid: 0612345678\nagi_channel: PJSIP/x-1\n\n"
        )
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            answer = b""  # closed with our header unread: a reset is a close too
        writer.close()
        assert answer == b"", answer  # closed, not one command
        return "wrong or missing secret" in kcc.serve_log.read_text()

    for _ in range(20):
        if await request_without_secret():
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("serve never refused a request for its secret")
    # Asterisk's own calls carry the secret and still reach the IVR.
    kcc.phone("2001")
    result = await kcc.call("14070", caller="0612345678", hold_ms=500)
    assert result.returncode == 0, result.stderr
    log = kcc.serve_log.read_text()
    assert "wrong or missing secret" in log
    assert "ivr: s from '06******78'" in log  # served, and the caller ID masked in the log
