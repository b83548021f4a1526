"""`bereik up`: the whole exchange on one machine with the example configuration."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from pathlib import Path

from bereik.mailsink import start_mail_sink
from bereik.serve import serve
from dialplan import asterisk, clock
from dialplan.config import Config, load
from dialplan.kamailio import (
    NODE_AMI_STEP,
    NODE_RTP_SPAN,
    NODE_SIP_STEP,
    KamailioProcess,
    render_kamailio,
)
from dialplan.logs import keep_bounded
from dialplan.private import private_dir, write_private
from dialplan.render import render


def with_nodes(config: Config, config_path: Path, count: int) -> Path:
    """A copy of the configuration file with `count` nodes behind Kamailio, Kamailio on
    [asterisk]'s SIP address (so phones and the trunk use the same address as with one
    Asterisk); written beside the instance, so `bereik node ... --config` can use it.

    Every port and path is derived from [asterisk]'s, so two demos with different
    configurations (the tests run several at once) share none of them.
    """
    a = config.asterisk
    rpc_port = a.ami_port + (count + 1) * NODE_AMI_STEP
    tables = [
        f'\n[kamailio]\nsip_bind = "{a.sip_bind}"\nsip_port = {a.sip_port}\n'
        f'rpc_port = {rpc_port}\ninstance_dir = "{a.instance_dir}-kamailio"\n'
    ]
    for n in range(1, count + 1):
        name = chr(ord("a") + n - 1)
        rtp = a.rtp_start + (n - 1) * NODE_RTP_SPAN
        tables.append(
            f'\n[[nodes]]\nname = "{name}"\nsip_port = {a.sip_port + n * NODE_SIP_STEP}\n'
            f"ami_port = {a.ami_port + n * NODE_AMI_STEP}\n"
            f'instance_dir = "{a.instance_dir}-{name}"\n'
            f"rtp_start = {rtp}\nrtp_end = {rtp + NODE_RTP_SPAN - 1}\n"
        )
    home = private_dir(Path(a.instance_dir).parent)
    path = home / f"{Path(a.instance_dir).name}-{count}-nodes.toml"
    write_private(path, config_path.read_text() + "".join(tables))
    load(path)  # the same checks as any configuration file
    return path


def run_demo(config: Config, config_path: Path, nodes: int = 0) -> int:
    installation = asterisk.install(progress=lambda line: print(line, flush=True))
    if nodes:
        config_path = with_nodes(config, config_path, nodes)
        config = load(config_path)
        return _run_nodes(config, config_path, installation)
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
        asyncio.run(_serve_until_signal(config, mail_folder, [process]))
    finally:
        process.stop()
        print("stopped Asterisk and bereik serve")
    return 0


def _run_nodes(config: Config, config_path: Path, installation: asterisk.Installation) -> int:
    """The demo with every [[nodes]] Asterisk behind Kamailio."""
    processes = []
    kamailio = KamailioProcess(config)
    try:
        for node in config.nodes:
            render(config.node(node.name), installation)
            process = asterisk.AsteriskProcess(installation, node.instance_dir)
            process.start()
            processes.append(process)
            print(f"node {node.name}: Asterisk on {node.host}:{node.sip_port}, AMI {node.ami_port}")
        home = render_kamailio(config, installation)
        kamailio.check()
        kamailio.start()
        k = config.kamailio
        web = f"{'https' if config.tls.https else 'http'}://{config.server.http_host}:"
        print(
            f"\nBereik is running on {len(processes)} nodes behind Kamailio.\n"
            f"  Call 14070:      sip:{config.exchange.main_number}@{k.sip_bind}:{k.sip_port}\n"
            f"  Phones:          register at {k.sip_bind}:{k.sip_port} (Kamailio)\n"
            f"  Web and API:     {web}{config.server.http_port}/\n"
            f"  Nodes:           bereik node status --config {config_path}\n"
            f"                   bereik node drain a --config {config_path}\n"
            f"  Kamailio:        {home}/kamailio.cfg, log {home}/kamailio.log\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        mail_folder = installation.host_path(config.asterisk.instance_dir).parent / "demo-mail"
        asyncio.run(_serve_until_signal(config, mail_folder, processes))
    finally:
        kamailio.stop()
        for process in processes:
            process.stop()
        print("stopped Kamailio, the nodes and bereik serve")
    return 0


async def _serve_until_signal(
    config: Config, mail_folder: Path, processes: list[asterisk.AsteriskProcess]
) -> None:
    sink = await start_mail_sink(config, mail_folder)
    # Asterisk's logs name callers: kept for the call term, as the calls (no logrotate here).
    logs = [
        (
            p.installation.host_path(p.instance_dir) / "log",
            functools.partial(p.cli, "logger reload"),
        )
        for p in processes
    ]
    pruning = asyncio.create_task(keep_bounded(logs, config.retention.call_days, clock.now))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await serve(config, stop)
    finally:
        pruning.cancel()
        if sink is not None:
            sink.close()
