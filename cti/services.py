"""What a handler, a worker or a web view may use: built once per process, passed explicitly.

This is the ground of the process: it imports the configuration (dialplan.config) and the
adapters (store, AMI client, speech engine, metrics registry), never a feature, so every
feature, handler and the command line may import it without a cycle.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cti.ami.client import READER, AmiClient
from cti.ami.nodes import Ami, AmiNodes
from cti.store.cache import Caches, Counters, Notifications, signals_for
from cti.store.db import Sessions, create_engine, migrate_async, sessions
from cti.store.writer import Writer
from cti.tts import TtsEngine, engine_for
from dialplan.asterisk import installed
from dialplan.config import Config
from dialplan.render import load_secrets
from metrics.registry import BereikMetrics


@dataclass
class Services:
    config: Config
    sessions: Sessions
    metrics: BereikMetrics
    # Where Asterisk's instance directory is on this machine (sounds, recordings).
    instance_dir: Path
    # The voice of every prompt and announcement ([tts] in the configuration).
    tts: TtsEngine
    # The one AMI client (commands to Asterisk); None in a command-line tool. With
    # [[nodes]], one face over a client per node (cti/ami/nodes.py).
    ami: Ami | None = None
    # The call path's look-ups kept in memory while the database signals no change.
    caches: Caches = field(default_factory=Caches)
    # Sessions for long reads (the figures of the board, /metrics and reports). On SQLite
    # a connection of their own: the calls' one connection is never held by an aggregate
    # over weeks of calls (seconds on a large database, while every caller's handler
    # waited and admission control refused calls). None: `sessions`.
    figures: Sessions | None = None
    # The call path's group commit (cti/store/writer.py), made on first use.
    _writer: Writer | None = field(default=None, repr=False)

    @property
    def writer(self) -> Writer:
        """The call path's transactions share commits here, over `sessions`' engine."""
        if self._writer is None:
            self._writer = Writer(self.sessions.kw["bind"])
        return self._writer

    @property
    def reads(self) -> Sessions:
        """Where long read-only queries go (see `figures`)."""
        return self.figures or self.sessions

    @property
    def sounds_dir(self) -> Path:
        return self.instance_dir / "sounds"

    def asterisk_path(self, host_path: Path) -> str:
        """The path Asterisk uses for a file under the instance directory."""
        relative = host_path.relative_to(self.instance_dir)
        return f"{self.config.asterisk.instance_dir}/{relative}"


def instance_dir(config: Config) -> Path:
    """Where Asterisk's instance directory is on this machine (in its chroot if it has one)."""
    installation = installed()
    root = installation.root if installation else Path("/")
    return root / config.asterisk.instance_dir.lstrip("/")


def build_services(
    config: Config,
    store: Sessions,
    *,
    home: Path | None = None,
    handlers: Iterable[str] = (),
    with_ami: bool = False,
) -> Services:
    """The one place Services are put together (bereik serve, the command line, the bench).

    `handlers` are the FastAGI handler names whose series exist from the start; `with_ami`
    makes the AMI client (not yet started) with this instance's generated secret.
    """
    home = home or instance_dir(config)
    metrics = BereikMetrics(teams=[team.id for team in config.teams], handlers=handlers)
    ami: Ami | None = None
    if with_ami:
        secret = load_secrets(home / "secrets.json", config).ami

        def client(host: str, port: int, node: str = "") -> AmiClient:
            return AmiClient(
                host,
                port,
                config.asterisk.ami_user,
                secret,
                queue_size=config.asterisk.ami_event_queue,
                node=node,
            )

        if config.nodes:
            ami = AmiNodes(
                {node.name: client(node.host, node.ami_port, node.name) for node in config.nodes},
                queue_size=config.asterisk.ami_event_queue,
            )
        else:
            ami = client("127.0.0.1", config.asterisk.ami_port)
        ami.on_state.append(metrics.set_ami_connected)
        ami.on_dropped.append(metrics.ami_event_dropped)
        # A malformed message is counted as the reader's failure (cti/ami/client.py).
        metrics.init_ami_subscriber(READER)
        ami.on_skipped.append(functools.partial(metrics.ami_event_failed, READER))
    return Services(
        config=config,
        sessions=store,
        metrics=metrics,
        instance_dir=home,
        tts=engine_for(config.tts),
        ami=ami,
        caches=Caches(signals_for(config.database.url)),
    )


@asynccontextmanager
async def open_services(
    config: Config, *, handlers: Iterable[str] = (), with_ami: bool = False
) -> AsyncIterator[Services]:
    """Services on the configured database, migrated first; the engine is closed after.

    PostgreSQL's change notifications, which let the call path trust its caches, are
    listened to by `bereik serve` under its supervisor (cti/store/cache.py
    `Notifications.run`); a short command reads the database instead.
    """
    await migrate_async(config.database.url)
    engine = create_engine(config.database.url)
    services = build_services(config, sessions(engine), handlers=handlers, with_ami=with_ami)
    # SQLite: one more connection, for reads only (WAL: readers never wait for the writer).
    figures_engine = create_engine(config.database.url) if engine.dialect.name == "sqlite" else None
    if figures_engine is not None:
        services.figures = sessions(figures_engine)
    signals = services.caches.signals
    try:
        yield services
    finally:
        if isinstance(signals, Notifications):
            await signals.close()
        elif isinstance(signals, Counters):
            signals.close()
        if figures_engine is not None:
            await figures_engine.dispose()
        await engine.dispose()
