"""Coaching end to end: supervisors listen, whisper and barge in on a KCC agent's call.

Real Asterisk (ChanSpy), `bereik serve`, Chromium for the board's button, and baresip
softphones for everyone on the call: the citizen (on the trunk), the agent and three
supervisors. Each phone sends its own steady tone and records what it receives, so the
recordings show whose voice reached whom.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import socket
import subprocess
import tempfile
import weakref
from pathlib import Path

from bench.exchange import Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.api import api
from tests.support.baresip import Baresip
from tests.support.browser import axe, chromium, serious
from tests.support.browser import sign_in as sign_in_browser
from tests.support.ivr import TEAM
from tests.support.users import add_users, api_tokens, token_for

CITIZEN = "0644444451"
# What each one sends (Hz); the tone the agent is told with is Asterisk's beep (~700 Hz).
CITIZEN_HZ, AGENT_HZ, LISTEN_HZ, WHISPER_HZ, BARGE_HZ, BEEP_HZ = 400, 550, 1000, 1300, 1600, 700
# How much of the call the recordings are judged on: all three spies on it.
TOGETHER_S = 3.0
RATE = 8000


class TonePhone(Baresip):
    """A baresip phone (UDP, no SRTP, auto-answer) that sends a steady sine tone and records
    what it receives (the sndfile module: the decoded audio of each call)."""

    def __init__(self, workdir: Path, user: str, hz: int, port: int) -> None:
        super().__init__(
            workdir, f"sip:{user}@127.0.0.1", password="-", ca_file="", srtp=False, register=False
        )
        tone = self.directory / "tone.wav"
        subprocess.run(
            ["sox", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(tone),
             "synth", "60", "sine", str(hz), "vol", "0.3"],
            check=True,
        )  # fmt: skip
        # baresip's sndfile names a dump "<snd_path>/dump-<time>-<peer>-<enc|dec>.wav" in a
        # buffer of 128 characters: under an xdist worker's long tmp_path the name was cut
        # before "-dec", and the two streams' dumps shared one file. A short directory.
        self.received = Path(tempfile.mkdtemp(prefix="snd-"))
        weakref.finalize(self, shutil.rmtree, self.received, True)
        config = (self.directory / "config").read_text()
        config = re.sub(r"sip_listen \S+", f"sip_listen 127.0.0.1:{port}", config)
        config = re.sub(r"sip_cafile .*\n", "", config)
        config = config.replace("audio_source aubridge,phone", f"audio_source aufile,{tone}")
        config = config.replace(
            "module srtp.so\n", f"module aufile.so\nmodule sndfile.so\nsnd_path {self.received}\n"
        )
        (self.directory / "config").write_text(config)

    def heard(self) -> list[int]:
        """The samples this phone received in its one call (16-bit, 8 kHz), read past the
        WAV header whether or not it was finished."""
        [dump] = self.received.glob("*-dec*")  # the caller's has no .wav suffix
        data = dump.read_bytes()
        start = data.index(b"data") + 8
        return [
            int.from_bytes(data[i : i + 2], "little", signed=True)
            for i in range(start, len(data) - 1, 2)
        ]


def share(samples: list[int], hz: int) -> float:
    """The share of the samples' energy at `hz` (Goertzel): about 1 for a pure tone at hz,
    about 1/n for one of n equally loud tones, about 0 when hz is not in it."""
    k = 2 * math.cos(2 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    energy = sum(x * x for x in samples) or 1
    return (s1 * s1 + s2 * s2 - k * s1 * s2) / (len(samples) * energy / 2)


def loudest(samples: list[int], hz: int, window: int = RATE // 5) -> float:
    """The largest share at `hz` in any fifth of a second (a short beep in a long call)."""
    return max(
        (share(samples[i : i + window], hz) for i in range(0, len(samples) - window, window)),
        default=0.0,
    )


def phone_port() -> int:
    """A port for a baresip phone whose next port is free too: baresip binds its (unused)
    TLS listener there. The next one is taken from the pool, so no other part gets it."""
    for _ in range(20):
        port, spare = free_port(), free_port()
        if spare == port + 1:
            return port
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no port with a free neighbour")


async def test_supervisors_listen_whisper_and_barge_each_heard_by_whom_it_should_others_get_403(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    extensions = {"2001": AGENT_HZ, "2050": LISTEN_HZ, "2051": WHISPER_HZ, "2052": BARGE_HZ}
    ports = {extension: phone_port() for extension in extensions}
    phones = [Phone(extension, port) for extension, port in ports.items()]
    phones.append(Phone("3001", free_port()))
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAM) as ex:
        ex.start_asterisk()
        ex.start_serve()
        # Sofie, Mia and Noor supervise the KCC from 2050, 2051, 2052; Carla is a member
        # and Lars the lead of Vergunningen, another team than KCC agent Anna's (2001).
        await add_users(ex, [("sofie", "supervisor", "", "2050")])
        tokens = await api_tokens(
            ex,
            [
                ("mia", "supervisor", "", "2051"),
                ("noor", "supervisor", "", "2052"),
                ("carla", "member", "vergunningen", "3001"),
                ("lars", "lead", "vergunningen", ""),
            ],
        )
        on_call = {
            extension: TonePhone(tmp_path, extension, hz, ports[extension])
            for extension, hz in extensions.items()
        }
        citizen = TonePhone(tmp_path, CITIZEN, CITIZEN_HZ, phone_port())
        everyone = [*on_call.values(), citizen]
        try:
            await asyncio.gather(*(phone.start() for phone in everyone))
            async with chromium() as browser, ex.ami_events() as ami:
                board = await sign_in_browser(browser, ex, "sofie", width=1400, height=1000)
                await board.goto(ex.url("/board"))
                await board.wait_for_selector("#coaching-none")
                await citizen.command("dial", f"sip:14070@127.0.0.1:{ex.ports.sip}")
                answered = await ami.wait_for(
                    "DialEnd", DialStatus="ANSWER", timeout=30,
                    where=lambda e: e.get("DestChannel", "").startswith("PJSIP/2001-"),
                )  # fmt: skip
                agent_channel = answered["DestChannel"]
                ((call_id,),) = await until(
                    lambda: ex.rows("SELECT id FROM calls WHERE caller = :c", c=CITIZEN)
                )

                # Nobody else may listen in: a member, the lead of another team (on record).
                for who in ("carla", "lars"):
                    status, body = await api(
                        ex, "POST", f"/api/calls/{call_id}/coach", tokens[who], {"mode": "listen"}
                    )
                    assert status == 403, (who, body)
                status, _ = await api(
                    ex, "POST", "/api/calls/987654/coach", tokens["lars"], {"mode": "listen"}
                )
                assert status == 404

                # The board lists Anna's call; "Meeluisteren" by keyboard rings Sofie's phone.
                listen = "#coaching-calls tr th:has-text('2001') ~ td button[data-mode='listen']"
                await board.wait_for_selector(listen, timeout=15_000)
                await board.focus(listen)
                await board.keyboard.press("Enter")
                await board.wait_for_selector("#coaching-status.ok:has-text('2050')")
                # Mia whispers and Noor barges in, by the API.
                for who, mode in (("mia", "whisper"), ("noor", "barge")):
                    status, body = await api(
                        ex, "POST", f"/api/calls/{call_id}/coach", tokens[who], {"mode": mode}
                    )
                    assert status == 200, body
                spies = {}
                for extension, mode in (("2050", "listen"), ("2051", "whisper"), ("2052", "barge")):
                    spies[extension] = await ami.wait_for(
                        "ChanSpyStart", timeout=20,
                        where=lambda e, x=extension: e.get("SpyerChannel", "").startswith(
                            f"PJSIP/{x}-"
                        ),
                    )  # fmt: skip
                    # Asterisk spies on Anna's channel, in the mode asked.
                    assert spies[extension]["SpyeeChannel"] == agent_channel
                    assert spies[extension]["SpyerExten"] == mode
                # [coaching] announce (the default): the tone's own spy on Anna's channel.
                tone = await ami.wait_for(
                    "ChanSpyStart", timeout=10,
                    where=lambda e: e.get("SpyerChannel", "").startswith("Local/tone@"),
                )  # fmt: skip
                assert tone["SpyeeChannel"] == agent_channel
                assert not serious(await axe(board))

                # The recordings need the voices together for a while: a duration of audio,
                # not an event to wait on.
                await asyncio.sleep(TOGETHER_S)
                # Anna puts the phone down: every spy ends with her call.
                await ami.client.action({"Action": "Hangup", "Channel": agent_channel})
                for extension in spies:
                    await ami.wait_for(
                        "ChanSpyStop", timeout=10,
                        where=lambda e, x=extension: e.get("SpyerChannel", "").startswith(
                            f"PJSIP/{x}-"
                        ),
                    )  # fmt: skip
                await asyncio.gather(*(phone.wait_for("CALL_CLOSED") for phone in everyone))
        finally:
            await asyncio.gather(*(phone.stop() for phone in everyone))

        # Who heard whom, in the last seconds with all three spies on the call.
        last = int(TOGETHER_S * RATE) - RATE // 4
        heard = {name: phone.heard() for name, phone in [*on_call.items(), ("citizen", citizen)]}
        together = {name: samples[-last : -(RATE // 10)] for name, samples in heard.items()}
        present, absent = 0.05, 0.01
        agent = together["2001"]
        assert share(agent, CITIZEN_HZ) > present  # the call itself
        assert share(agent, WHISPER_HZ) > present  # Mia's whisper reaches Anna ...
        assert share(agent, BARGE_HZ) > present  # ... and Noor's barge
        assert share(agent, LISTEN_HZ) < absent  # Sofie only listens
        caller = together["citizen"]
        assert share(caller, AGENT_HZ) > present
        assert share(caller, BARGE_HZ) > present  # Noor's barge reaches the citizen too
        assert share(caller, WHISPER_HZ) < absent  # Mia's whisper does not
        assert share(caller, LISTEN_HZ) < absent
        for extension in ("2050", "2051", "2052"):
            # Each supervisor hears both sides of the call.
            assert share(together[extension], AGENT_HZ) > present, extension
            assert share(together[extension], CITIZEN_HZ) > present, extension
        # The tone: Anna heard the beep, the citizen never did.
        assert loudest(heard["2001"], BEEP_HZ) > 0.2
        assert loudest(heard["citizen"], BEEP_HZ) < 0.05

        # With no agent on it any more the call cannot be joined (the board has seen the
        # call end when its row has).
        await until(lambda: ex.rows("SELECT id FROM calls WHERE ended_at IS NOT NULL"))
        status, body = await api(
            ex, "POST", f"/api/calls/{call_id}/coach", await token_for(ex, "sofie"),
            {"mode": "barge"},
        )  # fmt: skip
        assert status == 409, body

        # On record: each request, each spy's start on Anna's channel and its end; the two
        # refusals by Carla and Lars.
        def sessions() -> list[tuple[str, str, str]] | None:
            rows = ex.rows(
                "SELECT actor, action, detail FROM audit_log WHERE object_type = 'coaching' "
                "ORDER BY id"
            )
            return rows if len(rows) >= 9 else None

        rows = await until(sessions)
        for who in ("sofie", "mia", "noor"):
            mine = [(action, detail) for actor, action, detail in rows if actor == who]
            assert [action for action, _ in mine] == ["coach", "coach_start", "coach_end"], who
            assert mine[1][1].endswith(f"on {agent_channel}")
        refused = ex.rows(
            "SELECT actor FROM audit_log WHERE action = 'refuse' AND detail LIKE 'coach:%' "
            "ORDER BY id"
        )
        assert [r[0] for r in refused] == ["carla", "lars"]
