"""`bereik up`: the whole exchange on one machine with the example configuration."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from bereik import asterisk
from bereik.config import Config
from bereik.serve import serve
from dialplan.render import render


def run_demo(config: Config, config_path: Path) -> int:
    installation = asterisk.install(progress=lambda line: print(line, flush=True))
    etc = render(config, installation)
    print(f"Asterisk configuration written to {etc}")
    process = asterisk.AsteriskProcess(installation, config.asterisk.instance_dir)
    process.start()
    print(
        "\nBereik is running.\n"
        f"  Call 14070:      sip:{config.exchange.main_number}@{config.asterisk.sip_bind}:"
        f"{config.asterisk.sip_port} (from a trunk address: {', '.join(config.asterisk.trunk_addresses)})\n"
        f"  Phones:          {', '.join(p.extension for p in config.phones)} register at the same"
        f" address; passwords in {installation.host_path(config.asterisk.instance_dir)}/secrets.json\n"
        f"  Web and API:     http://{config.server.http_host}:{config.server.http_port}/\n"
        f"  Metrics:         http://{config.server.http_host}:{config.server.http_port}/metrics\n"
        f"  Asterisk CLI:    {' '.join(installation.command('asterisk', '-C', process.config_file, '-r'))}\n"
        f"  Configuration:   {config_path}\n"
        "Ctrl-C stops both.\n",
        flush=True,
    )
    try:
        asyncio.run(_serve_until_signal(config))
    finally:
        process.stop()
        print("stopped Asterisk and bereik serve")
    return 0


async def _serve_until_signal(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await serve(config, stop)
