"""Real parts for end-to-end tests: an Asterisk instance, `bereik serve`, sipp callers and phones.

Each test gets its own Asterisk instance (own ports, own directory in the Asterisk root)
and its own database, so tests never see each other's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import holidays
from sqlalchemy import create_engine, text

from cti.ami.client import AmiClient
from cti.store.db import async_url
from dialplan.asterisk import AsteriskProcess, Installation
from dialplan.config import Config, load
from dialplan.kamailio import derived_port_offsets
from dialplan.render import load_secrets, render

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = Path(__file__).parent / "scenarios"
DTMF_PCAPS = Path("/usr/share/sip-tester")
ARTIFACTS = REPO / "test-artifacts"
# deploy/asterisk/dialplan/main.conf.j2's line when a 14070 call takes the fallback.
IVR_FALLBACK = re.compile(r"Bereik IVR unavailable \(AGISTATUS=\w*\); (\S+) goes to the KCC")

# Where each exchange's database lives: None is a SQLite file in the test's directory;
# tests/conftest.py sets a PostgreSQL database maker when BEREIK_TEST_DB=postgres.
new_postgres_database: Callable[[], str] | None = None


# sipp callers send no audio after their keys, so Asterisk never hears the silence that
# ends a recording: the spoken question (after every confirmed callback) would wait its
# full 60 s. Off unless a test configures [question_recording] itself (tests/e2e/
# test_voice.py, with a caller who speaks and presses #).
QUIET_QUESTIONS = "[question_recording]\nenabled = false\n"


def test_database_url(workdir: Path) -> str:
    """A fresh, empty database for one exchange, on the backend this run tests."""
    if new_postgres_database is not None:
        return new_postgres_database()
    return f"sqlite:///{workdir / 'bereik.db'}"


def sync_url(url: str) -> str:
    """The URL for the tests' own synchronous reads (psycopg on PostgreSQL)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def start_bereik_serve(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`bereik serve` from this checkout in its own session, its output appended to log_path."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bereik", "serve", "--config", str(config_path)],
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


async def until(check: Any, timeout: float = 15.0) -> Any:
    """Poll `check` every 0.2 s until it returns something true; return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s")


# Listener ports: from a range the kernel never gives to outgoing connections when the
# test command has reserved it (scripts/test), each xdist worker its own half, handed out
# in turn (a port comes round again only thousands of picks later, long after its test).
RESERVED_PORTS = range(50000, 60000)
_next_port: dict[str, int] = {}
CLUSTER_OFFSETS = derived_port_offsets(3)
_derived: set[int] = set()


def _reserved(first: int, last: int) -> bool:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_reserved_ports").read_text()
    except OSError:
        return False
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and int(low) <= first and int(high or low) >= last:
            return True
    return False


def _reserved_pick() -> int | None:
    if not _reserved(RESERVED_PORTS[0], RESERVED_PORTS[-1]):
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    share = len(RESERVED_PORTS) // count
    ports = RESERVED_PORTS[index * share : (index + 1) * share]
    usable = ports[: len(ports) - max(CLUSTER_OFFSETS)]
    position = _next_port.setdefault(worker, random.randrange(len(usable)))
    for step in range(len(usable)):
        port = usable[(position + step) % len(usable)]
        if port not in _derived and _bindable(port):
            _next_port[worker] = (position + step + 1) % len(usable)
            # `bereik up --nodes` binds ports at these offsets from a picked SIP or AMI
            # port: never hand them out (handed out in turn, node b's AMI port would be
            # the HTTP port picked two after the AMI port).
            _derived.update(port + offset for offset in CLUSTER_OFFSETS)
            _derived.update(port - offset for offset in CLUSTER_OFFSETS)
            return port
    return None


def _bindable(port: int) -> bool:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        try:
            tcp.bind(("127.0.0.1", port))
            udp.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_udp_bound(port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Return once some socket holds UDP `port` (sipp has bound it and answers from then
    on); fail if `process` exits first. Read from /proc/net/udp: binding the port to try
    it could make sipp's own bind fail."""
    wanted = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sipp on port {port} exited with {process.returncode}")
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            with contextlib.suppress(OSError):
                # Each row's second column is local_address, e.g. 0100007F:C350.
                rows = Path(table).read_text().splitlines()[1:]
                if any(wanted in row.split(None, 2)[1] + " " for row in rows):
                    return
        time.sleep(0.01)
    raise AssertionError(f"sipp did not bind UDP port {port} within {timeout} s")


def free_port() -> int:
    """A port free for both TCP and UDP on loopback."""
    picked = _reserved_pick()
    if picked is not None:
        return picked
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port < 60000:
            return port
    raise RuntimeError("no free port")


# sipp's media ports: audio RTP on the port given (-mp), RTCP on the next, video on the
# two after. A free port from the kernel is an ephemeral one, which any socket may take
# before sipp binds its neighbours (tests run side by side): media ports come from a
# range no one else uses instead, below the ephemeral ports (32768 on) and outside the
# test Asterisks' RTP range (rtp_start/rtp_end below).
MEDIA_PORTS = range(11000, 19996, 4)
MEDIA_BLOCK = 4


def free_media_ports() -> int:
    """The first of MEDIA_BLOCK consecutive UDP ports free on loopback, for sipp's -mp."""
    for port in random.sample(MEDIA_PORTS, 200):
        with contextlib.ExitStack() as held:
            try:
                for offset in range(MEDIA_BLOCK):
                    udp = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    udp.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
        return port
    raise RuntimeError("no free block of media ports")


@dataclass
class Phone:
    extension: str
    port: int
    name: str = ""
    # "tls": the phone registers over SIP/TLS with SRTP (no fixed contact; see baresip.py).
    transport: str = "udp"
    # A phone that registers with its digest credentials (Exchange.register) instead of
    # having a fixed contact address in the configuration.
    registers: bool = False

    def toml(self) -> str:
        text = (
            f'[[phones]]\nextension = "{self.extension}"\nname = "{self.name or self.extension}"\n'
        )
        if self.transport != "udp":
            return text + f'transport = "{self.transport}"\n'
        if self.registers:
            return text
        return text + f'contact = "sip:{self.extension}@127.0.0.1:{self.port}"\n'


@dataclass
class Ports:
    sip: int = field(default_factory=free_port)
    ami: int = field(default_factory=free_port)
    agi: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    smtp: int = field(default_factory=free_port)
    trunk: int = field(default_factory=free_port)


class Exchange:
    """One exchange under test: its configuration, Asterisk and `bereik serve`."""

    def __init__(
        self,
        installation: Installation,
        workdir: Path,
        extra_toml: str = "",
        phones: list[Phone] | None = None,
        teams_toml: str = "",
        kcc_agents: list[str] | None = None,
        hours_toml: str | None = None,
        database_url: str | None = None,
        agi_proxy: bool = False,
        kcc_toml: str = "",
        server_toml: str = "",
        asterisk_toml: str = "",
    ) -> None:
        self.installation = installation
        self.workdir = workdir
        self.ports = Ports()
        # With agi_proxy, Asterisk reaches FastAGI through HAProxy (start_agi_proxy).
        self.agi_proxy_port = free_port() if agi_proxy else None
        self.agi_proxy: subprocess.Popen[bytes] | None = None
        # A line per FastAGI connection as it ends: "... fastagi bereik/bereikN ...".
        self.agi_proxy_log = self.workdir / "haproxy.log"
        self.name = f"test-{secrets.token_hex(4)}"
        self.instance_dir = f"/var/lib/bereik/{self.name}"
        # The SQLite file (tests of SQLite's own behaviour use it); database_url is the store.
        self.db_path = workdir / "bereik.db"
        self.database_url = database_url or test_database_url(workdir)
        self.phones = phones if phones is not None else [Phone("2001", free_port(), "KCC Anna")]
        self.kcc_agents = kcc_agents if kcc_agents is not None else ["2001"]
        self.config_path = workdir / "bereik.toml"
        # Open around the clock by default, so a test's call takes the open path on a
        # Sunday night or Christmas too; tests of closed hours pass their own [hours].
        self.config_path.write_text(
            self._toml(extra_toml, teams_toml, kcc_toml, server_toml, asterisk_toml)
            + (always_open() if hours_toml is None else hours_toml)
        )
        self.config: Config = load(self.config_path)
        self.asterisk = AsteriskProcess(installation, self.instance_dir)
        self.serve_process: subprocess.Popen[bytes] | None = None
        self.serve_log = workdir / "serve.log"
        self.sipp_processes: list[subprocess.Popen[bytes]] = []
        self.more_serves: list[ServeProcess] = []
        self._engine = create_engine(sync_url(self.database_url), pool_pre_ping=True)

    def _toml(
        self, extra: str, teams: str, kcc: str = "", server: str = "", asterisk: str = ""
    ) -> str:
        phones = "\n".join(p.toml() for p in self.phones)
        agents = ", ".join(f'"{a}"' for a in self.kcc_agents)
        return f"""
[server]
agi_port = {self.ports.agi}
http_port = {self.ports.http}
{server}

[asterisk]
sip_port = {self.ports.sip}
ami_port = {self.ports.ami}
rtp_start = 20000
rtp_end = 29999
instance_dir = "{self.instance_dir}"
trunk_contact = "sip:127.0.0.1:{self.ports.trunk}"
{f'fastagi = "127.0.0.1:{self.agi_proxy_port}"' if self.agi_proxy_port else ""}
{asterisk}

[database]
url = "{self.database_url}"

[mail]
smtp_port = {self.ports.smtp}
retry_seconds = 1

[kcc]
number = "7000"
agents = [{agents}]
ring_seconds = 15
{kcc}

{phones}
{teams}
{extra}
{"" if "[question_recording]" in extra else QUIET_QUESTIONS}
"""

    @property
    def async_database_url(self) -> str:
        """The database URL with the asyncio driver `bereik serve` uses."""
        return async_url(self.database_url)

    @property
    def sync_database_url(self) -> str:
        return sync_url(self.database_url)

    @property
    def host_instance(self) -> Path:
        return self.installation.host_path(self.instance_dir)

    # Asterisk

    def start_asterisk(self) -> None:
        render(self.config, self.installation)
        self.asterisk.start()

    def stop_asterisk(self) -> None:
        self.asterisk.stop()

    def cli(self, command: str) -> str:
        return self.asterisk.cli(command)

    def ivr_fallbacks(self) -> list[str]:
        """Uniqueids of the calls the dialplan sent to the KCC because the IVR handler
        failed, from the line main.conf logs for each (Asterisk's messages.log)."""
        log = (self.host_instance / "log" / "messages.log").read_text()
        return IVR_FALLBACK.findall(log)

    def active_channels(self) -> int:
        output = self.cli("core show channels count")
        for line in output.splitlines():
            if "active channel" in line:
                return int(line.split()[0])
        raise AssertionError(f"unexpected `core show channels count` output: {output!r}")

    # bereik serve

    def start_serve(self, wait: bool = True) -> None:
        self.serve_process = start_bereik_serve(self.config_path, self.serve_log)
        if wait:
            self.wait_http("/healthz", timeout=90)  # start-up speaks every prompt (TTS)

    def stop_serve(self, kill: bool = False) -> None:
        process, self.serve_process = self.serve_process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(45)  # bereik serve drains its FastAGI sessions for up to 30 s
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def add_serve(self) -> ServeProcess:
        """One more `bereik serve` on this exchange's database, with its own ports."""
        serve = ServeProcess(self, len(self.more_serves) + 1)
        self.more_serves.append(serve)
        return serve

    def start_agi_proxy(self, serves: list[ServeProcess]) -> None:
        """HAProxy in front of `serves`, as deploy/haproxy/bereik-fastagi.cfg sets it up."""
        assert self.agi_proxy_port is not None, "Exchange(agi_proxy=True) first"
        template = (REPO / "deploy" / "haproxy" / "bereik-fastagi.cfg").read_text()
        head, _, _ = template.partition("    server bereik1")
        # Its log goes to haproxy.log (HAProxy started in the foreground), not to syslog.
        head = head.replace("log /dev/log local0", "log stdout format raw local0")
        config = head.replace("127.0.0.1:4573", f"127.0.0.1:{self.agi_proxy_port}") + "".join(
            f"    server bereik{n} 127.0.0.1:{serve.agi_port} check port {serve.http_port}"
            + (" check-ssl verify none" if self.config.tls.https else "")
            + "\n"
            for n, serve in enumerate(serves, 1)
        )
        path = self.workdir / "haproxy.cfg"
        path.write_text(config)
        subprocess.run(["haproxy", "-c", "-q", "-f", str(path)], check=True)
        self.agi_proxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(path)],
            stdout=open(self.agi_proxy_log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_http(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        context = self.ssl_context()
        while time.monotonic() < deadline:
            if self.serve_process is not None and self.serve_process.poll() is not None:
                raise AssertionError(
                    f"bereik serve exited; log:\n{self.serve_log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(self.url(path), timeout=2, context=context):
                    return
            except urllib.error.HTTPError:
                return  # it answers: /healthz's 503 names a part that is down, not a dead process
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{path} not answering after {timeout} s")

    def url(self, path: str) -> str:
        scheme = "https" if self.config.tls.https else "http"
        return f"{scheme}://127.0.0.1:{self.ports.http}{path}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """With [tls] https: a client context trusting exactly the exchange's certificate."""
        if not self.config.tls.https:
            return None
        return ssl.create_default_context(cafile=self.config.tls.cert_file)

    def health(self) -> tuple[int, dict[str, Any]]:
        """/healthz's status and body, also when it answers 503 (a part is down)."""
        try:
            with urllib.request.urlopen(
                self.url("/healthz"), timeout=10, context=self.ssl_context()
            ) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def http_get(self, path: str) -> str:
        with urllib.request.urlopen(
            self.url(path), timeout=10, context=self.ssl_context()
        ) as response:
            return str(response.read().decode())

    # the database, as a test reads it

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self._engine.connect() as connection:
            return list(connection.execute(text(sql), params))

    # AMI, for assertions "from Asterisk's side"

    @contextlib.asynccontextmanager
    async def ami_events(self) -> Any:
        secret = load_secrets(self.host_instance / "secrets.json", self.config).ami
        client = AmiClient("127.0.0.1", self.ports.ami, self.config.asterisk.ami_user, secret)
        client.start()
        await client.wait_connected(10)
        recorder = EventRecorder(client)
        recorder.start()
        try:
            yield recorder
        finally:
            recorder.stop()
            await client.close()

    # sipp

    def phone(
        self, extension: str, mode: str = "answer", ring_ms: int = 300
    ) -> subprocess.Popen[bytes]:
        """Start a sipp phone for an extension: answer, noanswer (rings forever) or busy."""
        phone = next(p for p in self.phones if p.extension == extension)
        scenario = "busy_phone.xml" if mode == "busy" else "phone.xml"
        ring = 3_600_000 if mode == "noanswer" else ring_ms
        path = self._scenario(scenario, {"ring": str(ring)}, f"{extension}-{mode}")
        return self.start_sipp_uas(path, phone.port, f"sipp-{extension}")

    def register(self, extension: str, local_ip: str = "127.0.0.1") -> None:
        """Register a phone with its digest credentials; its contact is the phone's port
        (on `local_ip`, the address it registers from)."""
        phone = next(p for p in self.phones if p.extension == extension)
        secret = load_secrets(self.host_instance / "secrets.json", self.config)
        path = self._scenario(
            "register.xml",
            {"extension": extension, "contact_port": str(phone.port)},
            f"register-{extension}",
        )
        for _ in range(2):  # a REGISTER lost on a loaded machine: a phone simply tries again
            result = self._register_once(path, extension, secret.phones[extension], local_ip)
            if result.returncode == 0:
                return
        raise AssertionError(
            f"{extension} did not register (sipp exit {result.returncode}): "
            f"{result.stderr.decode(errors='replace')[-500:]}"
        )

    def _register_once(
        self, path: Path, extension: str, password: str, local_ip: str = "127.0.0.1"
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                "sipp",
                f"127.0.0.1:{self.ports.sip}",
                "-sf",
                str(path),
                "-i",
                local_ip,
                "-p",
                str(free_port()),
                "-m",
                "1",
                "-au",
                extension,
                "-ap",
                password,
                "-timeout",
                "10s",
                "-timeout_error",
                "-nostdin",
                "-trace_err",
                "-error_file",
                str(self.workdir / f"register-{extension}-errors.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=20,
        )

    def agent_phone(self, extension: str, ring_ms: int, talk_ms: int) -> Path:
        """A KCC agent's phone that answers after ring_ms and hangs up after talk_ms;
        returns its SIP message log (what the phone saw, with times)."""
        phone = next(p for p in self.phones if p.extension == extension)
        path = self._scenario(
            "agent_phone.xml", {"ring": str(ring_ms), "talk": str(talk_ms)}, f"agent-{extension}"
        )
        self.start_sipp_uas(path, phone.port, f"agent-{extension}", trace_messages=True)
        return self.workdir / f"agent-{extension}-messages.log"

    def citizen(
        self, mode: str, ring_ms: int = 300, hold_ms: int = 1500
    ) -> subprocess.Popen[bytes]:
        """A citizen's phone on the trunk (called back by the exchange): answer (and hang up
        after hold_ms), noanswer or busy. Its SIP messages go to citizen-<mode>-messages.log."""
        label = f"citizen-{mode}-{time.monotonic_ns()}"
        if mode == "busy":
            path = self._scenario("busy_phone.xml", {}, label)
        elif mode == "noanswer":
            path = self._scenario("phone.xml", {"ring": "3600000"}, label)
        else:
            path = self._scenario(
                "citizen.xml", {"ring": str(ring_ms), "hold": str(hold_ms)}, label
            )
        return self.start_sipp_uas(path, self.ports.trunk, f"citizen-{mode}", trace_messages=True)

    def start_sipp_uas(
        self,
        scenario: Path,
        port: int,
        log_name: str,
        *,
        calls: int | None = None,
        trace_messages: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Run sipp in the background as the SIP endpoint on `port` (a phone, the trunk).

        Errors go to `<log_name>-errors.log` in the workdir and, with `trace_messages`, the
        SIP messages to `<log_name>-messages.log`. `calls` ends sipp after that many calls;
        the teardown stops it otherwise. Returns once sipp has bound its SIP port.
        """
        process = subprocess.Popen(
            [
                "sipp",
                "-sf",
                str(scenario),
                "-i",
                "127.0.0.1",
                "-p",
                str(port),
                "-mp",
                str(free_media_ports()),
                *(["-m", str(calls)] if calls is not None else []),
                "-nostdin",
                "-aa",
                "-trace_err",
                "-error_file",
                str(self.workdir / f"{log_name}-errors.log"),
                *(
                    ["-trace_msg", "-message_file", str(self.workdir / f"{log_name}-messages.log")]
                    if trace_messages
                    else []
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.sipp_processes.append(process)
        wait_udp_bound(port, process)
        return process

    async def call(
        self,
        number: str,
        caller: str = "0612345678",
        keys: str = "",
        hold_ms: int = 1500,
        key_delay_ms: int = 1500,
        calls: int = 1,
        rate: float = 1.0,
        limit: int | None = None,
        timeout_s: int = 60,
        caller_name: str = "Burger",
        from_phone: str = "",
        target: str = "",
        local_ip: str = "127.0.0.1",
        speech: tuple[Path, float] | None = None,
        stat_file: Path | None = None,
        stop: asyncio.Event | None = None,
    ) -> SippResult:
        """Place `calls` calls to `number` as a citizen on the trunk; wait until all end.

        When `stop` is set, sipp places no more calls and ends once the calls in progress
        have (its SIGUSR1): a load that lasts as long as what it accompanies.

        With `from_phone` (an extension) the call comes from that internal phone instead,
        with its digest credentials, so it enters the dialplan in from-internal. `target`
        ("host:port") sends the call elsewhere (a provider in front of the exchange), from
        `local_ip`. sipp writes its statistics every second to `stat_file` (default: one in
        the work directory).
        """
        auth: list[str] = []
        if from_phone:
            secret = load_secrets(self.host_instance / "secrets.json", self.config)
            auth = ["-au", from_phone, "-ap", secret.phones[from_phone]]
            caller = from_phone
        name = f"call-{number}-{secrets.token_hex(3)}"
        key_actions = _key_actions(keys, self.workdir, name, speech)
        path = self._scenario(
            "phone_caller.xml" if from_phone else "caller.xml",
            {
                "caller": caller,
                "caller_name": caller_name,
                "hold": str(hold_ms),
                "key_delay": str(key_delay_ms),
            },
            name,
            keys=key_actions,
        )
        stat = stat_file or self.workdir / f"{name}.csv"
        command = [
            "sipp",
            target or f"127.0.0.1:{self.ports.sip}",
            "-sf",
            str(path),
            "-s",
            number,
            "-i",
            local_ip,
            "-p",
            str(free_port()),
            "-mp",
            str(free_media_ports()),
            "-m",
            str(calls),
            "-r",
            str(rate),
            "-rp",
            "1000",
            "-l",
            str(limit or calls),
            "-timeout",
            f"{timeout_s}s",
            "-timeout_error",
            "-nostdin",
            "-aa",
            *auth,
            "-trace_err",
            "-error_file",
            str(self.workdir / f"{name}-errors.log"),
            "-trace_stat",
            "-stf",
            str(stat),
            "-fd",
            "1",
            *(
                ["-trace_msg", "-message_file", str(self.workdir / f"{name}-messages.log")]
                if calls <= 5
                else []
            ),
        ]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        stopper = asyncio.create_task(_stop_sipp(process, stop)) if stop else None
        try:
            _, stderr = await process.communicate()
        finally:
            if stopper:
                stopper.cancel()
        return SippResult(process.returncode or 0, stat, stderr.decode(errors="replace"))

    def _scenario(self, name: str, values: dict[str, str], label: str, keys: str = "") -> Path:
        text_ = (SCENARIOS / name).read_text().replace("<!--KEYS-->", keys)
        for key, value in values.items():
            text_ = text_.replace(f"@{key}@", _xml_text(value))
        path = self.workdir / f"{label}.xml"
        path.write_text(text_)
        return path

    # teardown

    def close(self) -> None:
        for process in self.sipp_processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for serve in self.more_serves:
            serve.stop(kill=True)
        if self.agi_proxy is not None and self.agi_proxy.poll() is None:
            self.agi_proxy.kill()
            self.agi_proxy.wait()
        self.stop_serve()
        self.stop_asterisk()
        self._engine.dispose()
        self._keep_logs()
        shutil.rmtree(self.host_instance, ignore_errors=True)

    def _keep_logs(self) -> None:
        target = ARTIFACTS / "logs" / self.name
        with contextlib.suppress(OSError):
            target.mkdir(parents=True, exist_ok=True)
            for log in (self.host_instance / "log").glob("*.log"):
                shutil.copy(log, target / log.name)
            for log in [self.serve_log, *(serve.log for serve in self.more_serves)]:
                if log.exists():
                    shutil.copy(log, target / log.name)


class ServeProcess:
    """A further `bereik serve` of an exchange: the same configuration and database, its
    own FastAGI and HTTP ports (as a second machine would have)."""

    def __init__(self, exchange: Exchange, index: int) -> None:
        self.agi_port = free_port()
        self.http_port = free_port()
        text_ = exchange.config_path.read_text()
        for key, old, new in (
            ("agi_port", exchange.ports.agi, self.agi_port),
            ("http_port", exchange.ports.http, self.http_port),
        ):
            text_ = text_.replace(f"\n{key} = {old}\n", f"\n{key} = {new}\n", 1)
        self.config_path = exchange.workdir / f"bereik-{index}.toml"
        self.config_path.write_text(text_)
        self.log = exchange.workdir / f"serve-{index}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        self.process = start_bereik_serve(self.config_path, self.log)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"bereik serve exited; log:\n{self.log.read_text()[-3000:]}")
            try:
                url = f"http://127.0.0.1:{self.http_port}/healthz"
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers; a 503 names a part that is down
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"bereik serve not answering after {timeout} s")

    def stop(self, kill: bool = False) -> int | None:
        """SIGTERM (drain) or SIGKILL; the exit status, None when it was not running."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return None
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            return process.wait(45)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def _pcap_key(key: str) -> str:
    return {"*": "star", "#": "pound"}.get(key, key)


SPEECH_TEXT = (
    "Goedemiddag, ik heb een vraag over mijn parkeervergunning. Ik ben verhuisd en wil "
    "weten of mijn vergunning meeverhuist naar het nieuwe adres."
)


def speech_pcap(target: Path, seconds: float, text: str = SPEECH_TEXT) -> Path:
    """A pcap of `seconds` of Dutch speech (espeak-ng, then sox to 8 kHz A-law), as RTP
    packets of 20 ms for sipp's play_pcap_audio: a caller speaking into the call."""
    wav = target.with_suffix(".speech.wav")
    alaw = target.with_suffix(".al")
    subprocess.run(["espeak-ng", "-v", "nl", "-w", str(wav), text], check=True, timeout=60)
    subprocess.run(
        [
            "sox",
            str(wav),
            "-r",
            "8000",
            "-c",
            "1",
            "-t",
            "al",
            str(alaw),
            "pad",
            "0",
            str(seconds),
            "trim",
            "0",
            str(seconds),
        ],
        check=True,
        timeout=60,
    )
    audio = alaw.read_bytes()
    out = bytearray(
        (0xA1B2C3D4).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (4).to_bytes(2, "little")
        + bytes(8)
        + (65535).to_bytes(4, "little")
        + (1).to_bytes(4, "little")
    )
    for index in range(len(audio) // 160):
        rtp = (
            bytes([0x80, 8])
            + index.to_bytes(2, "big")
            + (index * 160).to_bytes(4, "big")
            + (0x5EECE5).to_bytes(4, "big")
            + audio[index * 160 : (index + 1) * 160]
        )
        udp = (4000).to_bytes(2, "big") * 2 + (8 + len(rtp)).to_bytes(2, "big") + bytes(2)
        ip = (
            bytes([0x45, 0])
            + (20 + len(udp) + len(rtp)).to_bytes(2, "big")
            + bytes(4)
            + bytes([64, 17])
            + bytes(2)
            + bytes([127, 0, 0, 1]) * 2
        )
        frame = bytes(12) + b"\x08\x00" + ip + udp + rtp
        usec = index * 20_000
        out += (
            (usec // 1_000_000).to_bytes(4, "little")
            + (usec % 1_000_000).to_bytes(4, "little")
            + len(frame).to_bytes(4, "little") * 2
            + frame
        )
    target.write_bytes(bytes(out))
    return target


async def _stop_sipp(process: asyncio.subprocess.Process, stop: asyncio.Event) -> None:
    """sipp's smooth exit once `stop` is set: no new calls, those in progress end."""
    await stop.wait()
    if process.returncode is None:
        process.send_signal(signal.SIGUSR1)


def _key_actions(
    keys: str, workdir: Path, label: str, speech: tuple[Path, float] | None = None
) -> str:
    """sipp actions for `keys`: a digit, * or # is sent as RFC 2833 (then 1.2 s pause);
    "," waits one more second; "~" plays 7 s of speech (g711a.pcap) into the call; "S"
    plays `speech` (a pcap from speech_pcap and its seconds) and waits as long.

    The pcaps are rewritten so their RTP sequence numbers and timestamps go on from the
    previous key: as captured, "0" has an older timestamp than "2", and Asterisk ignores
    an RFC 2833 end whose timestamp is not newer than the last one (so "20" or "99"
    would arrive as one key).
    """
    actions = []
    seq, ts = 1000, 80000
    for index, k in enumerate(keys):
        if k == ",":
            actions.append('<pause milliseconds="1000"/>')
            continue
        if k == "S":
            assert speech is not None, "key S needs speech=(pcap, seconds)"
            source, pause = speech[0], round(speech[1] * 1000)
        else:
            name = "g711a.pcap" if k == "~" else f"dtmf_2833_{_pcap_key(k)}.pcap"
            source, pause = DTMF_PCAPS / name, 7500 if k == "~" else 1200
        target = workdir / f"{label}-key{index}.pcap"
        seq, ts = _rewrite_rtp(source, target, seq, ts)
        actions.append(
            f'<nop><action><exec play_pcap_audio="{target}"/></action></nop>\n'
            f'<pause milliseconds="{pause}"/>'
        )
    return "\n".join(actions)


_RTP = 42  # Ethernet + IPv4 (no options) + UDP, as in every pcap sipp ships


def _rewrite_rtp(source: Path, target: Path, seq: int, ts: int) -> tuple[int, int]:
    """Copy a pcap with RTP seq/timestamps starting at seq/ts; return where the next goes on."""
    data = bytearray(source.read_bytes())
    offset, first_ts, count, last_ts = 24, None, 0, ts
    while offset + 16 <= len(data):
        length = int.from_bytes(data[offset + 8 : offset + 12], "little")
        rtp = offset + 16 + _RTP
        original = int.from_bytes(data[rtp + 4 : rtp + 8], "big")
        first_ts = original if first_ts is None else first_ts
        last_ts = (ts + original - first_ts) % 2**32
        data[rtp + 2 : rtp + 4] = ((seq + count) % 2**16).to_bytes(2, "big")
        data[rtp + 4 : rtp + 8] = last_ts.to_bytes(4, "big")
        count += 1
        offset += 16 + length
    target.write_bytes(bytes(data))
    return seq + count, (last_ts + 16000) % 2**32


def always_open() -> str:
    """An [hours] table open every day, every holiday included (the package's names)."""
    year = time.gmtime().tm_year
    names = sorted(
        set(
            holidays.country_holidays(
                "NL", language="en_US", years=range(year - 1, year + 2)
            ).values()
        )
    )
    listed = ", ".join(f'"{name}"' for name in names)
    days = "\n".join(
        f'{day} = "00:00-23:59"' for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    )
    return f"\n[hours]\n{days}\nholidays_open = [{listed}]\n"


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class SippResult:
    returncode: int
    stat_file: Path
    stderr: str

    def counts(self) -> dict[str, int]:
        """The last line of sipp's statistics: successful and failed calls."""
        lines = self.stat_file.read_text().splitlines() if self.stat_file.exists() else []
        if len(lines) < 2:
            return {}
        header, last = lines[0].split(";"), lines[-1].split(";")
        values = dict(zip(header, last, strict=False))
        return {
            key: int(values[key])
            for key in ("TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)")
            if key in values
        }


class EventRecorder:
    """Keeps every AMI event of a test, so it can assert what Asterisk did."""

    def __init__(self, client: AmiClient) -> None:
        self.client = client
        self.events: list[dict[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            event = await self.client.events.get()
            self.events.append({str(k): str(v) for k, v in event.items()})

    def matching(self, name: str, **headers: str) -> list[dict[str, str]]:
        return [
            e
            for e in self.events
            if e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())
        ]

    async def wait_for(
        self,
        name: str,
        timeout: float = 15.0,
        where: Callable[[dict[str, str]], bool] | None = None,
        **headers: str,
    ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.matching(name, **headers):
                if where is None or where(event):
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"no AMI event {name} {headers} within {timeout} s; saw "
            f"{sorted({e.get('Event', '?') for e in self.events})}"
        )


@contextlib.contextmanager
def exchange(installation: Installation, workdir: Path, **kwargs: Any) -> Iterator[Exchange]:
    ex = Exchange(installation, workdir, **kwargs)
    try:
        yield ex
    finally:
        ex.close()
