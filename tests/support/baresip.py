"""baresip (Debian baresip-core) as a real softphone: SIP over TLS, SRTP, auto-answer.

Driven through its ctrl_tcp module: commands and events are JSON in netstrings, so a test
waits on the phone's own events (REGISTER_OK, CALL_ESTABLISHED, CALL_CLOSED) instead of
sleeping. Audio goes through aubridge (what it receives it sends back), so no sound card.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.exchange import free_port

MODULES = Path("/usr/lib/baresip/modules")


class Baresip:
    """One baresip process with one account."""

    def __init__(
        self,
        workdir: Path,
        aor: str,
        *,
        password: str,
        ca_file: str,
        srtp: bool = True,
        register: bool = True,
    ) -> None:
        if shutil.which("baresip") is None:
            raise AssertionError("baresip is not installed: run the tests through scripts/test")
        self.directory = workdir / f"baresip-{aor.split('@')[0].split(':')[-1]}-{free_port()}"
        self.directory.mkdir(parents=True)
        self.control_port = free_port()
        self.log = self.directory / "baresip.log"
        parameters = [
            f"auth_pass={password}",
            "answermode=auto",
            "audio_codecs=PCMA,PCMU",
            f"regint={3600 if register else 0}",
        ]
        if srtp:
            # SDES only, RTP/SAVP: what Asterisk's media_encryption = sdes offers.
            parameters.append("mediaenc=srtp-mand")
        (self.directory / "accounts").write_text(f"<{aor}>;{';'.join(parameters)}\n")
        (self.directory / "config").write_text(
            "\n".join(
                [
                    "poll_method epoll",
                    f"sip_listen 127.0.0.1:{free_port()}",
                    f"sip_cafile {ca_file}",
                    "audio_player aubridge,phone",
                    "audio_source aubridge,phone",
                    "audio_alert aubridge,alert",
                    "rtp_ports 30000-39999",
                    f"module_path {MODULES}",
                    "module g711.so",
                    "module aubridge.so",
                    "module srtp.so",
                    "module_tmp account.so",
                    "module_app menu.so",
                    "module_app ctrl_tcp.so",
                    f"ctrl_tcp_listen 127.0.0.1:{self.control_port}",
                    "",
                ]
            )
        )
        self.events: list[dict[str, Any]] = []
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _launch(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["baresip", "-f", str(self.directory), "-v"],
            stdin=subprocess.DEVNULL,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def start(self) -> None:
        """Start baresip and connect to its control socket (then its events are kept)."""
        self.process = self._launch()
        deadline = time.monotonic() + 10
        while True:
            try:
                reader, self._writer = await asyncio.open_connection("127.0.0.1", self.control_port)
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"baresip did not start:\n{self.log.read_text()}"
                    ) from None
                await asyncio.sleep(0.1)
        self._reader = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            length = await reader.readuntil(b":")
            body = await reader.readexactly(int(length[:-1]))
            await reader.readexactly(1)  # the netstring's ","
            self.events.append(json.loads(body))

    async def command(self, command: str, params: str = "") -> None:
        assert self._writer is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._writer.write(f"{len(body)}:".encode() + body + b",")
        await self._writer.drain()

    async def wait_for(self, event_type: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event.get("type") == event_type:
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"baresip: no {event_type} within {timeout} s; events "
            f"{[(e.get('type'), e.get('param')) for e in self.events]}\n"
            f"{self.log.read_text()[-3000:]}"
        )

    def logged(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._writer is not None:
            self._writer.close()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
