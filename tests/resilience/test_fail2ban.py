"""fail2ban bans a password scanner from Asterisk's security log (issue 26), with the jail
and filter shipped in deploy/fail2ban/.

The test runs a fail2ban server of its own (its own socket, pid and database files in the
test's directory, `ignoreself = false` since every loopback address is this machine's own)
whose ban action writes to an nftables table of the test's own, created and removed here,
and drops only packets to this test's Asterisk SIP port: nothing else on the machine is
touched. The scanner on 127.0.0.3 tries 20 wrong passwords; a desk phone on 127.0.0.2 and
a citizen on the trunk go on calling.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import REPO, Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.sip_attacks import ATTACKER, PHONES, register_as, sipp, unanswered_register

DEPLOY = REPO / "deploy" / "fail2ban"
JAIL = "bereik-asterisk"


class Fail2ban:
    """A fail2ban server for one test: configuration, socket, pid, database and log in
    `directory`; bans into the nftables table `table` (inet), for `port` over UDP."""

    def __init__(self, directory: Path, security_log: Path, port: int) -> None:
        self.conf = directory / "fail2ban"
        self.table = f"bereik_f2b_{secrets.token_hex(4)}"
        self.log = directory / "fail2ban.log"
        for sub in ("filter.d", "action.d", "jail.d"):
            (self.conf / sub).mkdir(parents=True)
        (self.conf / "fail2ban.conf").write_text(
            "[Definition]\nloglevel = INFO\nsyslogsocket = auto\n"
            f"logtarget = {self.log}\nsocket = {directory / 'fail2ban.sock'}\n"
            f"pidfile = {directory / 'fail2ban.pid'}\n"
            f"dbfile = {directory / 'fail2ban.sqlite3'}\ndbpurgeage = 1d\n"
        )
        # 127.0.0.x are all this machine's own: nothing may be ignored for being local.
        (self.conf / "jail.conf").write_text("[DEFAULT]\nignoreself = false\nignoreip =\n")
        shutil.copy(DEPLOY / "filter.d" / f"{JAIL}.conf", self.conf / "filter.d")
        for action in ("nftables.conf", "nftables-multiport.conf"):
            shutil.copy(Path("/etc/fail2ban/action.d") / action, self.conf / "action.d")
        # The shipped jail, with this test's log file, SIP port and table.
        jail = (DEPLOY / "jail.d" / f"{JAIL}.conf").read_text()
        jail = re.sub(r"(?m)^logpath\s*=.*$", f"logpath  = {security_log}", jail)
        named = re.search(r"(?m)^action\s*=\s*(.*)$", jail)
        assert named, "the shipped jail names its action"
        ours = (
            named[1]
            .replace('port="5060,5061"', f'port="{port}"')
            .replace('protocol="udp,tcp"', 'protocol="udp"')
            .replace("]", f", table={self.table}]")
        )
        assert ours != named[1] and "blocktype=drop" in ours
        jail = jail.replace(named[0], f"action   = {ours}")
        (self.conf / "jail.d" / f"{JAIL}.conf").write_text(jail)
        self.process: subprocess.Popen[bytes] | None = None

    def client(self, *command: str) -> str:
        result = subprocess.run(
            ["fail2ban-client", "-c", str(self.conf), *command],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.stdout

    def start(self) -> None:
        subprocess.run(["nft", "add", "table", "inet", self.table], check=True)
        self.process = subprocess.Popen(
            ["fail2ban-client", "-c", str(self.conf), "-f", "-x", "start"],
            stdin=subprocess.DEVNULL,
            stdout=open(self.log.with_suffix(".out"), "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def banned(self) -> list[str]:
        status = self.client("status", JAIL)
        found = re.search(r"Banned IP list:[ \t]*(.*)", status)
        return found[1].split() if found else []

    def listing(self) -> str:
        """The test's nftables table as nft lists it (the ban action's chain and set)."""
        return subprocess.run(
            ["nft", "list", "table", "inet", self.table], capture_output=True, text=True, check=True
        ).stdout

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.client("stop")
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # The action removes its set and chain; the table is the test's to remove.
        subprocess.run(
            ["nft", "delete", "table", "inet", self.table], capture_output=True, check=False
        )


@pytest.fixture
def guarded(
    installation: asterisk.Installation, tmp_path: Path
) -> Iterator[tuple[Exchange, Fail2ban]]:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("2002", free_port(), registers=True)]
    with exchange(installation, tmp_path, phones=phones) as ex:
        ex.start_asterisk()
        security_log = ex.host_instance / "log" / "security.log"
        assert security_log.exists(), "Asterisk keeps a security log of its own"
        ban = Fail2ban(tmp_path, security_log, ex.ports.sip)
        ban.start()
        try:
            yield ex, ban
        finally:
            with contextlib.suppress(Exception):
                ex.workdir.joinpath("fail2ban-status.txt").write_text(ban.client("status", JAIL))
            ban.stop()


async def test_a_password_scanner_is_banned_while_a_phone_and_a_citizen_go_on(
    guarded: tuple[Exchange, Fail2ban],
) -> None:
    ex, ban = guarded
    await until(lambda: "pong" in ban.client("ping"), timeout=30)
    await until(lambda: JAIL in ban.client("status"), timeout=30)
    ex.start_serve()
    ex.phone("2001", ring_ms=200)
    ex.register("2002", local_ip=PHONES)
    target = f"127.0.0.1:{ex.ports.sip}"
    citizen = asyncio.create_task(
        ex.call("14070", caller="0611000006", hold_ms=4000, key_delay_ms=500)
    )
    await sipp(
        ex.workdir,
        "scanner",
        register_as("2001", "2001"),
        target,
        "-au",
        "2001",
        "-ap",
        "probeer-maar",
        calls=20,
        rate=10,
        timeout_s=10,
    )
    await until(lambda: ban.banned() == [ATTACKER], timeout=30)
    # Its packets are dropped: the next REGISTER gets no answer at all.
    code, messages = await sipp(ex.workdir, "after-ban", unanswered_register("2001"), target)
    assert code == 0, messages[-1500:]
    listed = ban.listing()
    assert ATTACKER in listed and f"udp dport {ex.ports.sip} ip saddr" in listed
    # The phone on another address keeps registering and calling; the citizen was answered.
    ex.register("2002", local_ip=PHONES)
    phone = await ex.call("14070", from_phone="2002", local_ip=PHONES, hold_ms=2000)
    assert phone.returncode == 0, phone.stderr
    result = await citizen
    assert result.returncode == 0, result.stderr
    sql = "SELECT caller, outcome FROM calls ORDER BY caller"
    await until(lambda: len(rows := ex.rows(sql)) == 2 and all(row.outcome for row in rows))
    assert [row.caller for row in ex.rows(sql)] == ["0611000006", "2002"]
    assert ex.rows(sql)[0].outcome == "answered_kcc"
    assert ban.banned() == [ATTACKER]  # never the phone, never the trunk
