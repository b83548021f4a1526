"""The SIP edge against a scanner (issue 26), on real Asterisk and real Kamailio.

Kamailio and the nodes are on 127.0.0.1, the trunk (the provider) sends from 127.0.0.4,
desk phones sign in from 127.0.0.2, the attacker is 127.0.0.3 (and a relay victim
127.0.0.5): the phones are neither the trunk nor the attacker, so a ban must spare them
by their own merit. Every test that
refuses the attacker also has a citizen call 14070 through the trunk at the same time,
and checks that call was answered by the KCC and ended normally.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cluster import Cluster, cluster
from bench.exchange import Exchange, Phone, SippResult, exchange, free_port, speech_pcap, until
from bereik.cli import main
from dialplan import asterisk
from dialplan.kamailio import KamailioError, rpc
from dialplan.render import load_secrets
from tests.support.baresip import Baresip
from tests.support.sip_attacks import (
    ATTACKER,
    PHONES,
    call_as,
    in_dialog_invite,
    options_flood,
    register_as,
    sipp,
    unanswered_register,
)

TRUNK = "127.0.0.4"
VICTIM = "127.0.0.5"
ON_THE_TRUNK = f'trunk_addresses = ["{TRUNK}"]'


def phones() -> list[Phone]:
    """The KCC agent's phone (answers at a fixed address) and a desk phone that registers."""
    return [Phone("2001", free_port(), "KCC Anna"), Phone("2002", free_port(), registers=True)]


async def citizen_call(ex: Exchange, caller: str) -> SippResult:
    """A citizen calls 14070 through the trunk and stays 4 s (the KCC answers)."""
    return await ex.call("14070", caller=caller, local_ip=TRUNK, hold_ms=4000, key_delay_ms=500)


async def answered_and_ended(ex: Exchange, result: SippResult, caller: str) -> None:
    assert result.returncode == 0, result.stderr
    sql = "SELECT outcome FROM calls WHERE caller = :caller"
    await until(lambda: [row.outcome for row in ex.rows(sql, caller=caller)] == ["answered_kcc"])


@pytest.fixture
def single(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    with exchange(installation, tmp_path, phones=phones(), asterisk_toml=ON_THE_TRUNK) as ex:
        ex.start_asterisk()
        ex.start_serve()
        ex.phone("2001", ring_ms=200)
        yield ex


async def test_a_stranger_calling_as_the_trunk_is_refused_while_a_citizen_is_answered(
    single: Exchange,
) -> None:
    target = f"127.0.0.1:{single.ports.sip}"
    citizen = asyncio.create_task(citizen_call(single, "0611000001"))
    # From user "trunk" (the endpoint's name), then From, To and auth user all "trunk",
    # then a user of the scanner's own, and a number the exchange does not have.
    tries = [
        await sipp(single.workdir, "as-trunk-from", call_as("trunk"), target),
        await sipp(
            single.workdir, "as-trunk-all", call_as("trunk", "trunk"), target, "-au", "trunk"
        ),
        await sipp(single.workdir, "as-scanner", call_as("x7f3q"), target, "-au", "x7f3q"),
        await sipp(single.workdir, "to-nowhere", call_as("100"), target, service="98765"),
    ]
    for code, messages in tries:
        # Each ends in 401 or 403 (a challenge no password meets), never answered.
        assert code == 0, messages[-1500:]
    await answered_and_ended(single, await citizen, "0611000001")
    assert [row.caller for row in single.rows("SELECT caller FROM calls")] == ["0611000001"]
    # Asterisk's security log names the stranger's address, for fail2ban.
    security = (single.host_instance / "log" / "security.log").read_text()
    assert f"/{ATTACKER}/" in security


@pytest.fixture
def edge(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Cluster]:
    """Kamailio in front of one node; the trunk at 127.0.0.4."""
    with cluster(
        installation, tmp_path, nodes=("a",), phones=phones(), asterisk_toml=ON_THE_TRUNK
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        ex.phone("2001", ring_ms=200)
        yield ex


def located(ex: Cluster, extension: str) -> str:
    """The extension's registered contacts as Kamailio's location table has them."""
    try:
        return str(rpc(ex.config, "ul.lookup", "location", extension))
    except KamailioError:
        return ""  # not registered (yet)


def kamailio_log(ex: Cluster) -> str:
    return (ex.kamailio_dir / "kamailio.log").read_text(errors="replace")


async def test_behind_kamailio_only_the_trunks_address_is_the_trunk(edge: Cluster) -> None:
    target = f"127.0.0.1:{edge.ports.sip}"
    secret = load_secrets(edge.host_instance / "secrets.json", edge.config).edge
    citizen = asyncio.create_task(citizen_call(edge, "0611000002"))
    strangers = [
        ("as-trunk", call_as("trunk")),
        ("as-citizen", call_as("0612345678")),
        # The nodes' mark, even the right one, is Kamailio's alone to give.
        ("with-mark", call_as("0612345678", extra_headers=f"X-Bereik-Trunk: {secret}")),
    ]
    for name, scenario in strangers:
        code, messages = await sipp(edge.workdir, name, scenario, target)
        assert code == 0, messages[-1500:]
        assert "SIP/2.0 403 Forbidden" in messages
    await answered_and_ended(edge, await citizen, "0611000002")
    assert [row.caller for row in edge.rows("SELECT caller FROM calls")] == ["0611000002"]


async def test_kamailio_relays_no_forged_in_dialog_request_elsewhere(edge: Cluster) -> None:
    victim_port = free_port()
    victim = edge.workdir / "victim.xml"
    victim.write_text(
        (Path(__file__).parents[2] / "bench" / "scenarios" / "phone.xml")
        .read_text()
        .replace("@ring@", "100")
    )
    process = await asyncio.create_subprocess_exec(
        "sipp",
        "-sf",
        str(victim),
        "-i",
        VICTIM,
        "-p",
        str(victim_port),
        "-m",
        "1",
        "-timeout",
        "30s",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(edge.workdir / "victim-messages.log"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        citizen = asyncio.create_task(citizen_call(edge, "0611000003"))
        code, messages = await sipp(
            edge.workdir,
            "relay",
            in_dialog_invite(f"{VICTIM}:{victim_port}"),
            f"127.0.0.1:{edge.ports.sip}",
            service="0900123456",
        )
        assert code == 0, messages[-1500:]
        await answered_and_ended(edge, await citizen, "0611000003")
    finally:
        process.kill()
        await process.wait()
    received = edge.workdir / "victim-messages.log"
    assert "INVITE sip:" not in (received.read_text() if received.exists() else "")


async def test_a_phone_cannot_register_another_extension_with_its_own_password(
    edge: Cluster,
) -> None:
    target = f"127.0.0.1:{edge.ports.sip}"
    password = load_secrets(edge.host_instance / "secrets.json", edge.config).phones["2001"]
    edge.register("2002", local_ip=PHONES)
    citizen = asyncio.create_task(citizen_call(edge, "0611000004"))
    attempts = [
        # From and auth user 2001 (its own password), To 2002.
        ("from-own", register_as("2001", "2002"), "2001"),
        # From 2001, To and auth user 2002, with 2001's password.
        ("auth-other", register_as("2001", "2002"), "2002"),
        # All 2002, with 2001's password.
        ("all-other", register_as("2002", "2002"), "2002"),
    ]
    for name, scenario, auth_user in attempts:
        code, messages = await sipp(
            edge.workdir, name, scenario, target, "-au", auth_user, "-ap", password
        )
        assert code == 0, f"{name}: {messages[-1500:]}"
    await answered_and_ended(edge, await citizen, "0611000004")
    # 2002 is still where it registered itself.
    contacts = located(edge, "2002")
    assert f"@{PHONES}:" in contacts and f"@{ATTACKER}:" not in contacts


async def banned_while_phone_and_citizen_go_on(ex: Cluster, attack: asyncio.Task[object]) -> None:
    """The attack ran (or runs); the attacker's next REGISTER gets no answer at all, while
    a phone on 127.0.0.2 registers and calls 14070 and a citizen's call is answered."""
    citizen = asyncio.create_task(citizen_call(ex, "0611000005"))
    await attack
    await until(lambda: "bereik edge: ban 127.0.0.3" in kamailio_log(ex), timeout=20)
    code, messages = await sipp(
        ex.workdir, "after-ban", unanswered_register("2001"), f"127.0.0.1:{ex.ports.sip}"
    )
    assert code == 0, messages[-1500:]
    ex.register("2002", local_ip=PHONES)
    phone = await ex.call("14070", from_phone="2002", local_ip=PHONES, hold_ms=2000)
    assert phone.returncode == 0, phone.stderr
    await answered_and_ended(ex, await citizen, "0611000005")
    await until(lambda: ex.rows("SELECT outcome FROM calls WHERE caller = '2002'"))


async def test_kamailio_bans_a_source_that_guesses_passwords(edge: Cluster) -> None:
    guesses = asyncio.create_task(
        sipp(
            edge.workdir,
            "guesses",
            register_as("2001", "2001"),
            f"127.0.0.1:{edge.ports.sip}",
            "-au",
            "2001",
            "-ap",
            "raden-maar",
            calls=20,
            rate=20,
            timeout_s=8,
        )
    )
    await banned_while_phone_and_citizen_go_on(edge, guesses)
    assert "failed authentication 10 for 2001 from 127.0.0.3" in kamailio_log(edge)


async def test_kamailio_bans_a_source_that_floods(edge: Cluster) -> None:
    flood = asyncio.create_task(
        sipp(
            edge.workdir,
            "flood",
            options_flood(),
            f"127.0.0.1:{edge.ports.sip}",
            calls=300,
            rate=300,
            timeout_s=8,
        )
    )
    await banned_while_phone_and_citizen_go_on(edge, flood)
    assert "(flood)" in kamailio_log(edge)


def sip_messages(ex: Cluster, node: str) -> list[str]:
    """The SIP messages in the node's full.log (`pjsip set logger on`), each starting with
    "Received" or "Transmitting"."""
    sip = (ex.node_dir(node) / "log" / "full.log").read_text(errors="replace")
    return sip.split("<--- ")


def srtp_offered_and_answered(offer: str, answer: str) -> None:
    for message in (offer, answer):
        assert "RTP/SAVP" in message and "a=crypto:" in message, message


async def test_a_phone_over_tls_at_kamailio_answers_and_calls_with_srtp(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    """A TLS phone behind Kamailio both ways: a citizen's call from the trunk rings it
    (Kamailio reaches it over the connection it registered on) and it answers with SRTP,
    the citizen's voice reaching it and its own (baresip sends back what it hears)
    reaching the node; then it calls 14070 itself."""
    tls_port = free_port()
    tls = (
        f'\n[tls]\ncert_file = "{tmp_path}/tls/cert.pem"\nkey_file = "{tmp_path}/tls/key.pem"\n'
        f"sip_port = {free_port()}\n"
    )
    # 2002 is a TLS phone and the KCC's agent: it signs in at Kamailio over TLS only, the
    # node rings it through Kamailio, and every call to or from it is SRTP.
    desk = [Phone("2002", free_port(), "KCC Anna", transport="tls")]
    with cluster(
        installation,
        tmp_path,
        nodes=("a",),
        phones=desk,
        kcc_agents=["2002"],
        # The trunk elsewhere: a phone on the trunk's address would be taken as the trunk.
        asterisk_toml=ON_THE_TRUNK,
        extra_toml=tls,
        # Kamailio reads the TLS pair after dropping to its user, who cannot pass the
        # test's private directories (0700, root's): here it stays root.
        kamailio_toml=f'tls_port = {tls_port}\nuser = "root"\ngroup = "root"',
    ) as ex:
        assert main(["tls", "selfsigned", "--config", str(ex.config_path)]) == 0
        ex.start_asterisk()
        ex.start_serve()
        # The node's SIP messages in its full.log: what reached it through Kamailio.
        ex.node_cli("a", "pjsip set logger on")
        ex.node_cli("a", "rtp set debug on")  # every RTP packet the node sends or decrypts
        speaking = 6.0
        speech = speech_pcap(ex.workdir / "citizen.pcap", speaking)
        password = load_secrets(ex.host_instance / "secrets.json", ex.config).phones["2002"]
        phone = Baresip(
            ex.workdir,
            f"sip:2002@127.0.0.1:{tls_port};transport=tls",
            password=password,
            ca_file=ex.config.tls.cert_file,
            srtp=True,  # mediaenc=srtp-mand: SDES keys in the SDP, nothing else accepted
        )
        await phone.start()
        try:
            # Registered over TLS, as Kamailio's location table has it (the phone registers
            # at start, before its control socket reports events).
            await until(lambda: "transport=tls" in located(ex, "2002").lower())
            # A citizen's call from the trunk: the node rings the phone through Kamailio,
            # over the TLS connection the phone registered on; it answers (auto-answer).
            # The citizen speaks from 1.5 s after the IVR answers until 7.5 s, and hangs up
            # at 8 s; the KCC rings the phone about 2 s in on a quiet machine, and the
            # speech outlasts a ring several seconds later on a busy one (the phone must
            # hear it after answering).
            citizen = asyncio.create_task(
                ex.call(
                    "14070",
                    caller="0611000009",
                    local_ip=TRUNK,
                    keys="S",
                    key_delay_ms=1500,
                    hold_ms=500,
                    speech=(speech, speaking),
                )
            )
            answered = await phone.wait_for("CALL_ESTABLISHED")
            assert answered.get("direction") == "incoming", answered
            await answered_and_ended(ex, await citizen, "0611000009")
            await phone.wait_for("CALL_CLOSED")  # the node's BYE reached the phone too
            assert phone.logged("SRTP is Enabled")
            # The node's SRTP offer reached the phone, which answered it with SRTP.
            messages = sip_messages(ex, "a")
            offers = [m for m in messages if m.startswith("Transmitting") and "INVITE sip:" in m]
            offers = [m for m in offers if "m=audio" in m]
            answers = [m for m in messages if m.startswith("Received") and "SIP/2.0 200 " in m]
            answers = [m for m in answers if "m=audio" in m]
            assert offers and answers, messages[-3:]
            srtp_offered_and_answered(offers[-1], answers[-1])
            # Audio both ways, each decrypted at the other end: the phone heard the citizen,
            # and the node decrypted what the phone sent back.
            assert phone.logged("incoming rtp for 'audio' established")
            media = re.search(r"m=audio (\d+) RTP/SAVP", answers[-1])
            assert media, answers[-1]
            log = "<--- ".join(messages)
            for direction in ("Got +RTP packet from", "Sent RTP packet to"):
                assert re.search(rf"{direction} +\S+:{media[1]} ", log), direction
            phone.events.clear()
            await phone.command("dial", f"sip:14070@127.0.0.1:{tls_port};transport=tls")
            await phone.wait_for("CALL_ESTABLISHED")  # the IVR answered, through Kamailio
        finally:
            await phone.stop()
        await until(lambda: ex.rows("SELECT caller FROM calls WHERE caller = '2002'"))
        # The node got the phone's SRTP offer untouched and answered it with SRTP.
        messages = sip_messages(ex, "a")
        offers = [m for m in messages if m.startswith("Received") and "INVITE sip:14070" in m]
        answers = [m for m in messages if m.startswith("Transmitting") and "SIP/2.0 200 OK" in m]
        answers = [m for m in answers if "m=audio" in m]
        assert offers and answers, messages[-3:]
        srtp_offered_and_answered(offers[-1], answers[-1])
        # The same phone over plain UDP is not 2002 at Kamailio (its keys would travel in
        # the clear): refused before any node sees it.
        plain = Baresip(
            ex.workdir,
            f"sip:2002@127.0.0.1:{ex.ports.sip}",
            password=password,
            ca_file=ex.config.tls.cert_file,
            register=False,
        )
        await plain.start()
        try:
            await plain.command("dial", f"sip:14070@127.0.0.1:{ex.ports.sip}")
            closed = await plain.wait_for("CALL_CLOSED")
            assert closed["param"].startswith("403"), closed
        finally:
            await plain.stop()
