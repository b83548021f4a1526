"""The README's demo command, as a new user runs it: from a clean clone, with the runtime
dependencies only (no test extras), and a call through it.

The test extras pulled in greenlet through another package, so a demo without them
failed at once while the suite was green; this clone gets a virtualenv of its own made
by `scripts/demo` itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from bench.exchange import REPO, SCENARIOS, free_media_ports, free_port, until

DEMO_SIP = "127.0.0.1:5060"
DEMO_WEB = "http://127.0.0.1:8080"


def _metrics() -> str:
    with urllib.request.urlopen(f"{DEMO_WEB}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _answering() -> bool:
    try:
        return "bereik_agi_requests_total" in _metrics()
    except OSError:
        return False


def _offered() -> float:
    for line in _metrics().splitlines():
        if line.startswith('bereik_calls_offered_total{entry="14070"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _start_demo(clone: Path, log: Path) -> subprocess.Popen[bytes]:
    """`scripts/demo` in a fresh clone of this repository's HEAD, in its own session."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.Popen(
        ["scripts/demo"],
        cwd=clone,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def _installed(clone: Path) -> str:
    return subprocess.run(
        [str(clone / ".venv/bin/python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()


def _stop_demo(demo: subprocess.Popen[bytes]) -> None:
    if demo.poll() is None:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C, as the README says
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


async def test_the_demo_command_starts_from_a_clean_clone_and_takes_a_call(
    tmp_path: Path,
) -> None:
    clone = tmp_path / "bereik"
    log = tmp_path / "demo.log"
    demo = _start_demo(clone, log)
    try:
        # pip installs the runtime dependencies into the clone's own .venv first.
        await until(lambda: demo.poll() is not None or _answering(), timeout=600)
        assert demo.poll() is None, log.read_text(errors="replace")[-4000:]
        assert "pytest" not in _installed(clone)  # runtime dependencies only
        assert "Bereik is running." in log.read_text(errors="replace")

        scenario = tmp_path / "caller.xml"
        scenario.write_text(
            (SCENARIOS / "caller.xml")
            .read_text()
            .replace("<!--KEYS-->", "")
            .replace("@caller_name@", "Burger")
            .replace("@caller@", "0655555501")
            .replace("@hold@", "4000")
            .replace("@key_delay@", "500")
        )
        call = await asyncio.create_subprocess_exec(
            "sipp", DEMO_SIP, "-sf", str(scenario), "-s", "14070", "-i", "127.0.0.1",
            "-p", str(free_port()), "-mp", str(free_media_ports()), "-m", "1", "-timeout", "30s",
            "-timeout_error", "-nostdin", "-aa",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await call.communicate()
        assert call.returncode == 0, stderr.decode(errors="replace")
        # The demo's own `bereik serve` spoke to the caller over FastAGI and counted the
        # call from Asterisk's events once it ended.
        await until(lambda: _offered() == 1.0, timeout=30)
        commands = [
            line
            for line in _metrics().splitlines()
            if line.startswith("bereik_agi_command_seconds_count")
        ]
        assert commands and float(commands[0].rsplit(" ", 1)[1]) >= 1
    finally:
        _stop_demo(demo)
    assert demo.returncode == 0, log.read_text(errors="replace")[-4000:]
    assert "stopped Asterisk and bereik serve" in log.read_text(errors="replace")
