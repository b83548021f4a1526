"""`bereik up`: the whole exchange on one machine with the example configuration."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from bereik.mailsink import start_mail_sink
from bereik.serve import serve
from dialplan import asterisk
from dialplan.config import Config
from dialplan.render import render


def run_demo(config: Config, config_path: Path) -> int:
    installation = asterisk.install(progress=lambda line: print(line, flush=True))
    etc = render(config, installation)
    print(f"Asterisk configuration written to {etc}")
    process = asterisk.AsteriskProcess(installation, config.asterisk.instance_dir)
    process.start()
    sip = f"{config.asterisk.sip_bind}:{config.asterisk.sip_port}"
    scheme = "https" if config.tls.https else "http"
    web = f"{scheme}://{config.server.http_host}:{config.server.http_port}"
    trunks = ", ".join(config.asterisk.trunk_addresses)
    phones = ", ".join(phone.extension for phone in config.phones)
    secrets = installation.host_path(config.asterisk.instance_dir) / "secrets.json"
    console = " ".join(installation.command("asterisk", "-C", process.config_file, "-r"))
    print(
        "\nBereik is running.\n"
        f"  Call 14070:      sip:{config.exchange.main_number}@{sip} (from trunk {trunks})\n"
        f"  Phones:          {phones} register at {sip}; passwords in {secrets}\n"
        f"  Web and API:     {web}/  (add a user: bereik users add NAME --role admin)\n"
        f"  Metrics:         {web}/metrics\n"
        f"  Asterisk CLI:    {console}\n"
        f"  Configuration:   {config_path}\n"
        "Ctrl-C stops both.\n",
        flush=True,
    )
    mail_folder = installation.host_path(config.asterisk.instance_dir).parent / "demo-mail"
    print(f"  Mail:            kept as files in {mail_folder} (demo mail server)\n", flush=True)
    try:
        asyncio.run(_serve_until_signal(config, mail_folder))
    finally:
        process.stop()
        print("stopped Asterisk and bereik serve")
    return 0


async def _serve_until_signal(config: Config, mail_folder: Path) -> None:
    sink = await start_mail_sink(config, mail_folder)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await serve(config, stop)
    finally:
        if sink is not None:
            sink.close()
