"""A process asked to stop leaves HAProxy's rotation before it closes its FastAGI socket.

Two `bereik serve` behind HAProxy (deploy/haproxy/bereik-fastagi.cfg, which checks each
process's GET /readyz). One of them gets SIGTERM while calls arrive. In the second after
the signal HAProxy has not yet seen it stop and may still pass it sessions: every session
that reaches it then is served, none is reset; the process closes its socket only after
HAProxy marked it down, and no caller takes the dialplan's fallback.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from bench.exchange import Exchange, ServeProcess, exchange, until
from dialplan import asterisk
from dialplan.render import load_secrets

CALLER = "0655400000"


async def fastagi_session(port: int, secret: str, uniqueid: str) -> str:
    """Open a FastAGI session for the IVR as Asterisk would, straight to one process;
    the first AGI command it sends back ("" when it closed or reset the connection)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return ""
    try:
        header = {
            "agi_network": "yes",
            "agi_network_script": f"{secret}/ivr",
            "agi_request": f"agi://127.0.0.1:{port}/{secret}/ivr",
            "agi_channel": f"PJSIP/trunk-{uniqueid}",
            "agi_uniqueid": uniqueid,
            "agi_callerid": CALLER,
            "agi_calleridname": "Burger",
            "agi_context": "from-trunk",
            "agi_extension": "14070",
            "agi_priority": "1",
        }
        writer.write(("".join(f"{k}: {v}\n" for k, v in header.items()) + "\n").encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        return line.decode(errors="replace").strip()
    except (ConnectionError, TimeoutError):
        return ""
    finally:
        writer.close()


def log_position(serve: ServeProcess, text: str) -> int:
    """Where `text` first stands in the process's log (-1 when absent)."""
    return serve.log.read_text(errors="replace").find(text)


async def test_a_stopping_process_serves_every_session_until_haproxy_took_it_out(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with exchange(installation, tmp_path, agi_proxy=True) as ex:
        serves = [ex.add_serve(), ex.add_serve()]
        ex.start_asterisk()
        for serve in serves:
            serve.start()
        ex.start_agi_proxy(serves)
        ex.phone("2001", ring_ms=100)
        # Both processes take calls through HAProxy (so its checks have reached both).
        warm = await ex.call("14070", caller=CALLER, calls=6, rate=3, hold_ms=500)
        assert warm.returncode == 0, warm.stderr[-2000:]
        await until(lambda: all(b"ivr: s from" in s.log.read_bytes() for s in serves), 30)

        victim = serves[1]
        assert victim.process is not None
        secret = load_secrets(ex.host_instance / "secrets.json", ex.config).agi
        load = asyncio.create_task(
            ex.call("14070", caller=CALLER, calls=20, rate=4, limit=20, hold_ms=1000)
        )
        await asyncio.sleep(1)  # the load is under way when the signal comes
        victim.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # In the second after the signal: sessions sent straight to it, as HAProxy may
        # still send them, are each served (the handler's first command comes back).
        answers: list[str] = []
        while time.monotonic() - signalled < 1.0:
            answers.append(await fastagi_session(victim.agi_port, secret, f"direct-{len(answers)}"))
            await asyncio.sleep(0.1)
        assert answers and all(answers), answers

        status = await asyncio.to_thread(victim.process.wait, 60)
        assert status == 0
        assert "bereik/bereik2 is DOWN" in ex.agi_proxy_log.read_text(errors="replace")
        leaving = log_position(victim, "stopping: leaving the rotation of 127.0.0.1")
        out = log_position(victim, "stopping: out of the rotation")
        closed = max(log_position(victim, "draining:"), log_position(victim, "drained:"))
        assert 0 <= leaving < out < closed, victim.log.read_text()[-3000:]

        result = await load
        counts = result.counts()
        assert result.returncode == 0, result.stderr[-2000:]
        assert counts["SuccessfulCall(C)"] == 20
        assert fallbacks(ex) == []


def fallbacks(ex: Exchange) -> list[str]:
    """Asterisk's log lines of calls that took a dialplan fallback."""
    log = ex.host_instance / "log" / "messages.log"
    return [line for line in log.read_text(errors="replace").splitlines() if "unavailable" in line]
