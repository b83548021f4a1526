"""What a handler or a web view may use: built once per process, passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cti.store.db import Sessions
from dialplan.asterisk import installed
from dialplan.config import Config

if TYPE_CHECKING:
    from cti.ami.bus import EventBus
    from cti.ami.client import AmiClient
    from metrics.registry import BereikMetrics


@dataclass
class Services:
    config: Config
    sessions: Sessions
    metrics: BereikMetrics
    # Where Asterisk's instance directory is on this machine (sounds, recordings).
    instance_dir: Path
    ami: AmiClient | None = None
    bus: EventBus | None = None
    extras: dict[str, object] = field(default_factory=dict)

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
