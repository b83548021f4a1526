"""The SIP edge as rendered (issue 26): who counts as the trunk, Kamailio's checks and bans,
the security log and its fail2ban filter, and staff calling out. The files are read as
Asterisk, Kamailio and fail2ban read them (kamailio -c, fail2ban-regex, fail2ban-client -t);
the behaviour itself is shown end to end in tests/e2e/test_sip_edge.py,
tests/e2e/test_call_out.py and tests/resilience/test_fail2ban.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from bereik.cli import main
from dialplan.asterisk import Installation
from dialplan.config import ConfigError, load
from dialplan.kamailio import KamailioProcess, render_kamailio
from dialplan.render import render, secrets_file

REPO = Path(__file__).resolve().parents[2]
FAIL2BAN = REPO / "deploy" / "fail2ban"
PHONES = '[[phones]]\nextension = "2001"\n\n[[phones]]\nextension = "2002"\n'
NODES = """
[kamailio]
sip_port = 5060
rpc_port = 5071
instance_dir = "{kamailio}"

[[nodes]]
name = "a"
sip_port = 5160
ami_port = 5039
instance_dir = "/var/lib/bereik/node-a"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bereik.toml"
    path.write_text(
        '[asterisk]\ninstance_dir = "/instance"\n'
        'trunk_addresses = ["192.0.2.10", "198.51.100.0/28"]\n'
        'trunk_contact = "sip:192.0.2.10:5060"\n' + PHONES + text
    )
    return path


def installation(tmp_path: Path) -> Installation:
    root = tmp_path / "root"
    (root / "usr/lib/asterisk/modules").mkdir(parents=True, exist_ok=True)
    return Installation(root, "22")


def rendered(tmp_path: Path, text: str = "", node: str = "") -> dict[str, str]:
    config = load(write(tmp_path, text))
    etc = render(config.node(node) if node else config, installation(tmp_path))
    return {path.name: path.read_text() for path in etc.iterdir() if path.is_file()}


def section(text: str, name: str, kind: str) -> str:
    """The body of [name] with type = kind in a pjsip.conf."""
    for block in re.split(r"\n(?=\[)", text):
        if block.startswith(f"[{name}]") and f"type = {kind}\n" in block:
            return block
    raise AssertionError(f"no [{name}] type = {kind}")


def test_the_trunk_is_known_by_its_addresses_only_and_phones_by_their_names(
    tmp_path: Path,
) -> None:
    pjsip = rendered(tmp_path)["pjsip.conf"]
    trunk = section(pjsip, "trunk", "endpoint")
    assert "identify_by = ip\n" in trunk
    assert "auth =" not in trunk  # the provider does not sign in: its address is its name
    identify = section(pjsip, "trunk", "identify")
    assert re.findall(r"^match = (.+)$", identify, re.M) == ["192.0.2.10", "198.51.100.0/28"]
    assert "match_header" not in identify
    for extension in ("2001", "2002"):
        phone = section(pjsip, extension, "endpoint")
        assert "identify_by = username\n" in phone
        assert f"auth = {extension}\n" in phone


def test_behind_kamailio_a_node_trusts_only_kamailios_secret_mark_as_the_trunk(
    tmp_path: Path,
) -> None:
    files = rendered(tmp_path, NODES.format(kamailio=tmp_path / "kamailio"), node="a")
    identify = section(files["pjsip.conf"], "trunk", "identify")
    secret = json.loads((tmp_path / "root/instance/secrets.json").read_text())
    assert f"match_header = X-Bereik-Trunk: {secret['edge']}\n" in identify
    # Every request reaches a node from Kamailio: no address makes a caller the trunk.
    assert "match =" not in identify
    assert len(secret["edge"]) >= 24


def kamailio_cfg(tmp_path: Path, text: str = "") -> tuple[str, Path]:
    config = load(write(tmp_path, NODES.format(kamailio=tmp_path / "kamailio") + text))
    where = installation(tmp_path)
    home = render_kamailio(config, where)
    KamailioProcess(config).check()  # kamailio -c: syntax, modules and their parameters
    return (home / "kamailio.cfg").read_text(), secrets_file(where, config)


def test_kamailio_marks_only_the_trunks_calls_and_strips_the_mark_from_everyone(
    tmp_path: Path,
) -> None:
    cfg, secrets = kamailio_cfg(tmp_path)
    edge = json.loads(secrets.read_text())["edge"]
    assert 'remove_hf("X-Bereik-Trunk");' in cfg
    # The mark is added in one place only, after the source was found to be the trunk.
    assert cfg.count(f"X-Bereik-Trunk: {edge}") == 1
    marked = cfg.index(f"X-Bereik-Trunk: {edge}")
    assert cfg.rfind('$var(source) == "trunk"', 0, marked) > cfg.index(
        'remove_hf("X-Bereik-Trunk")'
    )
    for network in ("192.0.2.10/32", "198.51.100.0/28"):
        assert f'is_in_subnet("$si", "{network}")' in cfg
    assert 'sl_send_reply("403", "Forbidden");' in cfg  # anyone else


def test_kamailio_checks_auth_from_and_to_user_relays_only_known_dialogs_and_bans(
    tmp_path: Path,
) -> None:
    cfg, _ = kamailio_cfg(tmp_path)
    registrar = cfg[cfg.index("route[REGISTRAR]") :]
    assert "if ($fU != $tU)" in registrar and "if ($au != $tU)" in registrar
    assert "$var(user) = $au;" in registrar  # the password by the auth user
    assert "is_known_dlg()" in cfg[cfg.index("route[WITHINDLG]") :]
    assert "sanity_check(" in cfg and "pike_check_req()" in cfg
    assert "$sht(ipban=>$si) != $null" in cfg


def test_the_bans_thresholds_come_from_the_configuration(tmp_path: Path) -> None:
    path = write(tmp_path, NODES.format(kamailio=tmp_path / "kamailio"))
    path.write_text(
        path.read_text().replace(
            "rpc_port = 5071\n",
            "rpc_port = 5071\nflood_requests = 12\nflood_seconds = 3\nauth_failures = 7\n"
            "auth_failure_seconds = 120\nban_seconds = 900\n",
        )
    )
    config = load(path)
    home = render_kamailio(config, installation(tmp_path))
    KamailioProcess(config).check()
    cfg = (home / "kamailio.cfg").read_text()
    assert 'modparam("pike", "sampling_time_unit", 3)' in cfg
    assert 'modparam("pike", "reqs_density_per_unit", 12)' in cfg
    assert "ipban=>size=8;autoexpire=900;" in cfg
    assert "authfail=>size=8;autoexpire=120;" in cfg
    assert "if ($var(failures) >= 7)" in cfg


def test_kamailio_listens_for_phones_on_tls_with_its_own_copy_of_the_pair(
    tmp_path: Path,
) -> None:
    tls = f'\n[tls]\ncert_file = "{tmp_path}/tls/cert.pem"\nkey_file = "{tmp_path}/tls/key.pem"\n'
    path = write(tmp_path, NODES.format(kamailio=tmp_path / "kamailio") + tls)
    assert main(["tls", "selfsigned", "--config", str(path)]) == 0
    config = load(path)
    home = render_kamailio(config, installation(tmp_path))
    KamailioProcess(config).check()
    cfg = (home / "kamailio.cfg").read_text()
    assert "listen=tls:127.0.0.1:5061" in cfg
    assert (home / "tls-key.pem").read_bytes() == (tmp_path / "tls/key.pem").read_bytes()
    assert (home / "tls-key.pem").stat().st_mode & 0o077 == 0
    assert f"private_key = {home}/tls-key.pem" in (home / "tls.cfg").read_text()


def test_security_events_have_a_log_of_their_own(tmp_path: Path) -> None:
    files = rendered(tmp_path)
    assert "security.log => security\n" in files["logger.conf"]
    assert "load = res_security_log.so\n" in files["modules.conf"]


def security_line(event: str, address: str, when: datetime) -> str:
    """One line as Asterisk's logger writes a res_security_log event (logger.conf's
    dateformat)."""
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.123")
    return (
        f'[{stamp}] SECURITY[2211] res_security_log.c: SecurityEvent="{event}",'
        f'EventTV="{when.isoformat()}",Severity="Error",Service="PJSIP",EventVersion="1",'
        f'AccountID="2001",SessionID="0x7f",LocalAddress="IPV4/UDP/127.0.0.1/5060",'
        f'RemoteAddress="IPV4/UDP/{address}/50123",Challenge="abc"\n'
    )


def test_the_fail2ban_filter_counts_failures_per_address_and_never_a_challenge(
    tmp_path: Path,
) -> None:
    now = datetime.now()
    log = tmp_path / "security.log"
    log.write_text(
        security_line("ChallengeResponseFailed", "127.0.0.3", now)
        + security_line("InvalidAccountID", "127.0.0.4", now)
        + security_line("FailedACL", "127.0.0.5", now)
        + security_line("ChallengeSent", "127.0.0.2", now)
        + security_line("SuccessfulAuth", "127.0.0.2", now)
    )
    result = subprocess.run(
        [
            "fail2ban-regex",
            "--print-all-matched",
            str(log),
            str(FAIL2BAN / "filter.d" / "bereik-asterisk.conf"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Lines: 5 lines, 0 ignored, 3 matched, 2 missed" in result.stdout, result.stdout
    matched = result.stdout[result.stdout.index("Matched line(s)") :]
    assert "127.0.0.2" not in matched.split("Missed line(s)")[0]


def test_the_fail2ban_jail_is_accepted_by_fail2ban(tmp_path: Path) -> None:
    """The shipped jail with the system's stock files (actions, paths) as fail2ban reads it."""
    conf = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    shutil.copy(FAIL2BAN / "filter.d" / "bereik-asterisk.conf", conf / "filter.d")
    shutil.copy(FAIL2BAN / "jail.d" / "bereik-asterisk.conf", conf / "jail.d")
    for other in (conf / "jail.d").iterdir():
        if other.name != "bereik-asterisk.conf":
            other.unlink()  # the distribution's sshd jail reads a log this machine lacks
    log = tmp_path / "security.log"
    log.write_text("")
    jail = conf / "jail.d" / "bereik-asterisk.conf"
    jail.write_text(jail.read_text().replace("/var/lib/bereik/asterisk/log/security.log", str(log)))
    result = subprocess.run(
        ["fail2ban-client", "-c", str(conf), "-d"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "['add', 'bereik-asterisk', 'polling']" in result.stdout
    assert "['set', 'bereik-asterisk', 'maxretry', 10]" in result.stdout
    assert "blocktype" in result.stdout and "drop" in result.stdout


def out_context(extensions: str) -> str:
    start = extensions.index("[bereik-out]")
    end = extensions.find("\n[", start + 1)
    return extensions[start : end if end > 0 else None]


def test_staff_call_out_by_prefix_112_always_and_costly_prefixes_per_phone(
    tmp_path: Path,
) -> None:
    files = rendered(
        tmp_path,
        '\n[trunk]\n\n[calls_out]\ncaller_id = "0701234999"\n'
        'extra_prefixes = { "0900" = ["2001"], "+32" = ["2001", "2002"] }\n',
    )
    extensions = files["extensions.conf"]
    internal = extensions[extensions.index("[from-internal]") :]
    assert "include => bereik-out" in internal.split("\n\n")[0]
    out = out_context(extensions)
    assert "exten => 112,1," in out and "Dial(PJSIP/112@trunk)" in out
    assert "Set(CALLERID(num)=0701234999)" in out
    assert '$["${EXTEN:0:3}" = "061"]?Set(BEREIK_OUT_OK=1)' in out  # a mobile, for everyone
    assert '"${EXTEN:0:4}" = "0900" & ("${CHANNEL(endpoint)}" = "2001")' in out
    assert (
        '"${EXTEN:0:4}" = "0032" & ("${CHANNEL(endpoint)}" = "2001" | '
        '"${CHANNEL(endpoint)}" = "2002")'
    ) in out
    assert '"${EXTEN:0:4}" = "0906"]?Set(BEREIK_OUT_OK=1)' not in out  # premium: nobody
    assert "Hangup(21)" in out and "Playback(" in out
    sounds = tmp_path / "root/instance/sounds/calls-out"
    assert sorted(p.name for p in sounds.glob("*.wav")) == [
        "out-abroad.wav",
        "out-other.wav",
        "out-premium.wav",
    ]


def test_numbers_go_out_in_the_providers_format(tmp_path: Path) -> None:
    out = out_context(rendered(tmp_path, '\n[trunk]\nnumber_format = "e164"\n')["extensions.conf"])
    assert "Set(BEREIK_OUT_DIAL=+31${EXTEN:1})" in out
    assert '"${EXTEN:0:2}" = "00"]?Set(BEREIK_OUT_DIAL=+${EXTEN:2})' in out
    assert "Set(CALLERID(num)=+3114070)" not in out  # a short number stays as it is
    assert "Set(CALLERID(num)=14070)" in out


def test_without_a_trunk_to_call_out_on_phones_dial_nothing_outside(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    path.write_text(path.read_text().replace('trunk_contact = "sip:192.0.2.10:5060"\n', ""))
    etc = render(load(path), installation(tmp_path))
    assert "bereik-out" not in (etc / "extensions.conf").read_text()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('extra_prefixes = { "0900" = ["2999"] }', "2999 is not a phone"),
        ('extra_prefixes = { "900" = ["2001"] }', "is not a prefix"),
        ('extra_prefixes = { "+0" = ["2001"] }', "is not a prefix"),
        ('caller_id = "gemeente"', "must be a phone number"),
    ],
)
def test_a_wrong_call_out_setting_is_one_clear_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        load(write(tmp_path, f"\n[calls_out]\n{text}\n"))


def test_behind_kamailio_a_tls_phone_is_known_only_over_tls_and_its_calls_need_srtp(
    tmp_path: Path,
) -> None:
    tls = f'\n[tls]\ncert_file = "{tmp_path}/tls/cert.pem"\nkey_file = "{tmp_path}/tls/key.pem"\n'
    nodes = NODES.format(kamailio=tmp_path / "kamailio") + tls
    text = nodes + '\n[[phones]]\nextension = "2003"\ntransport = "tls"\n'
    path = write(tmp_path, text)
    assert main(["tls", "selfsigned", "--config", str(path)]) == 0
    config = load(path)
    home = render_kamailio(config, installation(tmp_path))
    KamailioProcess(config).check()
    cfg = (home / "kamailio.cfg").read_text()
    secret = json.loads(secrets_file(installation(tmp_path), config).read_text())
    password = secret["phones"]["2003"]
    case = cfg.split('case "2003":')[1].split("break;")[0]
    assert "if (proto == TLS) {" in case and password in case
    # The node reaches the phone through Kamailio, and refuses a call without SRTP.
    etc = render(config.node("a"), installation(tmp_path))
    pjsip = (etc / "pjsip.conf").read_text()
    phone = section(pjsip, "2003", "endpoint")
    assert "media_encryption = sdes\n" in phone and "media_encryption_optimistic = no\n" in phone
    assert "transport = transport-tls" not in phone
    assert "context = from-internal\n" in phone
    assert "contact = sip:2003@127.0.0.1:5060\n" in section(pjsip, "2003", "aor")


def test_kamailio_reaches_a_tls_phone_only_over_the_connection_it_registered_on(
    tmp_path: Path,
) -> None:
    """A call to a TLS phone goes over the phone's own connection (the registration's,
    by its id), an in-dialog request finds it by the phone's address and Kamailio's TLS
    port (not the address alone, which a second connection from the same address to the
    JSON-RPC port took over), and Kamailio never opens a connection to a phone."""
    tls = f'\n[tls]\ncert_file = "{tmp_path}/tls/cert.pem"\nkey_file = "{tmp_path}/tls/key.pem"\n'
    path = write(tmp_path, NODES.format(kamailio=tmp_path / "kamailio") + tls)
    assert main(["tls", "selfsigned", "--config", str(path)]) == 0
    config = load(path)
    home = render_kamailio(config, installation(tmp_path))
    KamailioProcess(config).check()
    cfg = (home / "kamailio.cfg").read_text()
    assert re.search(r"^tcp_connection_match=1$", cfg, re.MULTILINE)
    to_phone = cfg.split("route[TO_PHONE] {")[1].split("\n}")[0]
    assert to_phone.index('lookup("location")') < to_phone.index('tcp_set_otcpid_flag("1")')
    assert "set_forward_no_connect();" in to_phone
    in_dialog = cfg.split("route[WITHINDLG] {")[1].split("\n}")[0]
    assert in_dialog.index("set_forward_no_connect();") < in_dialog.index("t_relay();")
