"""Providing Asterisk: a system one (>= 20) if installed, else a Debian sid chroot.

Debian 12 has no Asterisk package; sid has Asterisk 22 and installs in about 30 s into a
chroot made by debootstrap. The chroot is cached: a second `install` takes a second.
The mirror comes from this machine's own apt sources, never from a name in the repo.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("BEREIK_CACHE", "/var/cache/bereik"))
MIN_MAJOR = 20
CHROOT_PACKAGES = ["asterisk", "asterisk-core-sounds-en-gsm"]
# Names Asterisk resolves on every call; with no DNS answering, calls would hang forever.
STATIC_HOSTS = {
    "127.0.0.1": ["localhost", "localhost.localdomain"],
    "198.41.0.4": ["A.ROOT-SERVERS.NET", "a.root-servers.net"],
}

Progress = Callable[[str], None]


class InstallError(Exception):
    pass


@dataclass(frozen=True)
class Installation:
    root: Path  # "/" for a system Asterisk, else the chroot
    version: str

    @property
    def chrooted(self) -> bool:
        return self.root != Path("/")

    def host_path(self, path_in_asterisk: str) -> Path:
        """Where a path that Asterisk sees lives on this machine."""
        return self.root / path_in_asterisk.lstrip("/")

    def command(self, *arguments: str) -> list[str]:
        """An argument list that runs an Asterisk binary (in the chroot if there is one)."""
        if self.chrooted:
            return ["chroot", str(self.root), *arguments]
        return list(arguments)

    @property
    def modules_dir(self) -> str:
        for candidate in (
            "/usr/lib/x86_64-linux-gnu/asterisk/modules",
            "/usr/lib/aarch64-linux-gnu/asterisk/modules",
            "/usr/lib/asterisk/modules",
            "/usr/lib64/asterisk/modules",
        ):
            if self.host_path(candidate).is_dir():
                return candidate
        raise InstallError(f"no Asterisk modules directory under {self.root}")


def marker_path() -> Path:
    return CACHE / "asterisk.json"


def installed() -> Installation | None:
    """The installation recorded by an earlier `install`, if it is still there."""
    try:
        data = json.loads(marker_path().read_text())
        installation = Installation(Path(data["root"]), data["version"])
    except (OSError, ValueError, KeyError):
        return None
    return installation if _version_of(installation) else None


def install(progress: Progress = print) -> Installation:
    found = installed()
    if found:
        progress(f"Asterisk {found.version} already installed at {found.root}")
        return found
    system = Installation(Path("/"), "")
    version = _version_of(system)
    if version and _major(version) >= MIN_MAJOR:
        progress(f"using the system Asterisk {version}")
        return _record(Installation(Path("/"), version))
    root = CACHE / "asterisk-root"
    _make_chroot(root, progress)
    chrooted = Installation(root, "")
    version = _version_of(chrooted)
    if not version:
        raise InstallError(f"Asterisk did not run in {root} after installing it")
    progress(f"Asterisk {version} ready in {root}")
    return _record(Installation(root, version))


def require() -> Installation:
    found = installed()
    if found is None:
        raise InstallError("Asterisk is not installed: run `bereik asterisk install` first")
    return found


def _record(installation: Installation) -> Installation:
    CACHE.mkdir(parents=True, exist_ok=True)
    marker_path().write_text(
        json.dumps({"root": str(installation.root), "version": installation.version})
    )
    return installation


def _version_of(installation: Installation) -> str:
    binary = installation.host_path("/usr/sbin/asterisk")
    if not binary.exists():
        return ""
    try:
        output = subprocess.run(
            installation.command("/usr/sbin/asterisk", "-V"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"Asterisk (\S+)", output)
    return match.group(1) if match else ""


def _major(version: str) -> int:
    match = re.match(r"(\d+)", version)
    return int(match.group(1)) if match else 0


def host_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The first Debian mirror this machine's apt uses (deb822 or one-line format)."""
    candidates = sorted((sources_dir / "sources.list.d").glob("*.sources"))
    for path in candidates:
        for match in re.finditer(r"^URIs:\s*(\S+)", path.read_text(), re.MULTILINE):
            if "security" not in match.group(1):
                return match.group(1)
    for path in [
        sources_dir / "sources.list",
        *sorted((sources_dir / "sources.list.d").glob("*.list")),
    ]:
        if path.exists():
            for match in re.finditer(
                r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", path.read_text(), re.MULTILINE
            ):
                if "security" not in match.group(1):
                    return match.group(1)
    raise InstallError("no Debian mirror found in this machine's apt sources")


def _make_chroot(root: Path, progress: Progress) -> None:
    if not shutil.which("debootstrap"):
        progress("installing debootstrap")
        _run(["apt-get", "install", "-y", "-q", "debootstrap"], progress)
    if not (root / "usr/bin/apt-get").exists():
        if root.exists():
            shutil.rmtree(root)  # a half-made chroot from an interrupted run
        mirror = host_mirror()
        progress(f"debootstrap Debian sid into {root} (about 30 s)")
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        _run(["debootstrap", "--variant=minbase", "sid", str(partial), mirror], progress)
        partial.rename(root)
    _write_resolver_files(root)
    progress("installing Asterisk in the chroot")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(
        ["chroot", str(root), "apt-get", "-q", "-o", "Acquire::Check-Valid-Until=false", "update"],
        progress,
        env,
    )
    _run(
        [
            "chroot",
            str(root),
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            *CHROOT_PACKAGES,
        ],
        progress,
        env,
    )


def _write_resolver_files(root: Path) -> None:
    hosts = {address: list(names) for address, names in STATIC_HOSTS.items()}
    # Asterisk also resolves this machine's own name, which differs per machine.
    hosts["127.0.0.1"].append(socket.gethostname())
    lines = [f"{address}\t{' '.join(names)}" for address, names in hosts.items()]
    (root / "etc/hosts").write_text("\n".join(lines) + "\n")
    # apt in the chroot needs the host's resolver to reach the mirror.
    if Path("/etc/resolv.conf").exists():
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")


def _run(command: list[str], progress: Progress, env: dict[str, str] | None = None) -> None:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise InstallError(f"{' '.join(command[:4])} failed: " + " | ".join(tail))
    progress(f"  done in {time.monotonic() - started:.0f} s")


class AsteriskProcess:
    """One running Asterisk for one rendered instance directory."""

    def __init__(self, installation: Installation, instance_dir: str) -> None:
        self.installation = installation
        self.instance_dir = instance_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> str:
        return f"{self.instance_dir}/etc/asterisk.conf"

    def start(self, wait_seconds: float = 30.0) -> None:
        if self.installation.chrooted:
            _write_resolver_files(self.installation.root)
        log_dir = self.installation.host_path(self.instance_dir) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.installation.command("/usr/sbin/asterisk", "-f", "-C", self.config_file),
            stdin=subprocess.DEVNULL,
            stdout=open(log_dir / "stdout.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise InstallError(f"Asterisk exited at start; see {log_dir}/messages.log")
            if self._booted():
                return
            time.sleep(0.3)
        raise InstallError(f"Asterisk not fully booted within {wait_seconds:.0f} s")

    def _booted(self) -> bool:
        return "fully booted" in self.cli("core waitfullybooted").lower()

    def cli(self, command: str, timeout: float = 10.0) -> str:
        """Run one CLI command through the control socket; "" if Asterisk is not up."""
        try:
            result = subprocess.run(
                self.installation.command(
                    "/usr/sbin/asterisk", "-C", self.config_file, "-rx", command
                ),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return result.stdout

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM to a server we started in its own session; its whole group killed if it
    has not ended within `timeout` (Asterisk, Kamailio)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
