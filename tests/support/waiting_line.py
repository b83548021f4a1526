"""The KCC as a waiting line (kcc.mode = "queue"): its exchange, agents who register and
sign in with the feature codes, Asterisk's view of the line, what the phones saw."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from bench.exchange import (
    Exchange,
    Phone,
    exchange,
    free_port,
    until,
)
from dialplan import asterisk
from tests.support import sipplog

QUEUE_KCC = 'mode = "queue"'


# Several callers at once on a shared 2-core machine (and CI runs three tests at once):
# admission control (agi/admission.py, tested on its own) would send some calls, or an
# agent's feature code, down the fallback; these tests are about the line, so the bound on
# the first prompt is generous here.
PATIENT_SERVER = "first_prompt_seconds = 4"


WRAPUP_S = 2


SERVICE_LEVEL_S = 10


def queue_toml(**values: object) -> str:
    settings = {
        "wrapup_seconds": WRAPUP_S,
        "agent_ring_seconds": 10,
        "service_level_seconds": SERVICE_LEVEL_S,
        **values,
    }
    return "\n[queue]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())


def agents(*extensions: str) -> list[Phone]:
    return [Phone(e, free_port(), f"Agent {e}", registers=True) for e in extensions]


@contextlib.contextmanager
def kcc_line(
    installation: asterisk.Installation,
    tmp_path: Path,
    extensions: list[str],
    *,
    queue: dict[str, object] | None = None,
    kcc_extra: str = "",
    server_toml: str = PATIENT_SERVER,
    extra_toml: str = "",
) -> Iterator[Exchange]:
    """An exchange whose KCC is a waiting line with these agents (phones that register),
    Asterisk and `bereik serve` started; `extra_toml`: more sections (e.g. [survey])."""
    with exchange(
        installation,
        tmp_path,
        phones=agents(*extensions),
        kcc_agents=extensions,
        kcc_toml=QUEUE_KCC + ("\n" + kcc_extra if kcc_extra else ""),
        extra_toml=queue_toml(**(queue or {})) + extra_toml,
        server_toml=server_toml,
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        yield ex


async def feature_code(ex: Exchange, code: str, extension: str) -> None:
    # The exchange answers once the state has changed, says so and hangs up: its BYE may
    # come as soon as the short confirmation is over, so the phone waits for it at once
    # (sipp takes a BYE during a pause as an error; the default pause is 1.5 s).
    result = await ex.call(code, from_phone=extension, key_delay_ms=100, hold_ms=4000, timeout_s=30)
    assert result.returncode == 0, result.stderr[-500:]


async def sign_in(ex: Exchange, extension: str, queue: str = "kcc") -> None:
    """The agent signs in with the feature code on their own phone; Asterisk has them."""
    await feature_code(ex, ex.config.queue.sign_in_code, extension)
    await until(lambda: f"PJSIP/{extension}" in ex.cli(f"queue show {queue}"), timeout=10)


def metric(ex: Exchange, name: str, **labels: str) -> float | None:
    text = ex.http_get("/metrics")
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
        if match and match.group(1) == name:
            got = ",".join(sorted(match.group(2).split(",")))
            if got == wanted:
                return float(match.group(3))
    return None


def phone_calls(log: Path) -> list[dict[str, float | str]]:
    """Per call the phone got: who (the caller's number), rung, answered and hung up at."""
    calls: dict[str, dict[str, float | str]] = {}
    for m in sipplog.read(log):
        if not m.sent and m.method == "INVITE" and m.call_id not in calls:
            calls[m.call_id] = {"caller": m.user("from"), "rung": m.at}
        elif m.sent and m.status == 200 and m.cseq_method == "INVITE":
            calls[m.call_id].setdefault("answered", m.at)
        elif m.method == "BYE" and m.call_id in calls:
            calls[m.call_id].setdefault("ended", m.at)
    return sorted(calls.values(), key=lambda c: float(c["rung"]))


def members(ex: Exchange, queue: str = "kcc") -> dict[str, str]:
    """Asterisk's own view of a line: member -> "paused" or "in line"."""
    found = {}
    for line in ex.cli(f"queue show {queue}").splitlines():
        match = re.search(r"PJSIP/(\d+)", line)
        if match:
            found[match.group(1)] = "paused" if "paused" in line.lower() else "in line"
    return found
