"""Encryption and the registered trunk: configuration, number forms, rendering, demo certs."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from bereik.cli import main
from bereik.tls import server_context
from dialplan.asterisk import Installation
from dialplan.config import ConfigError, load
from dialplan.numbers import formatted, forms
from dialplan.render import render

PHONE = '[[phones]]\nextension = "2001"\n'


def write(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "bereik.toml"
    path.write_text(f'[asterisk]\ninstance_dir = "/instance"\n{text}')
    return path


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    return str(caught.value)


def demo_certs(tmp_path: Path, text: str = "") -> Path:
    """A configuration with [tls] files, and the pair made by `bereik tls selfsigned`."""
    path = write(
        tmp_path,
        f'[tls]\ncert_file = "{tmp_path}/tls/cert.pem"\nkey_file = "{tmp_path}/tls/key.pem"\n'
        + text,
    )
    assert main(["tls", "selfsigned", "--config", str(path)]) == 0
    return path


def rendered(tmp_path: Path, config_path: Path) -> dict[str, str]:
    """Render into a directory tree standing in for an Asterisk root; file name -> text."""
    root = tmp_path / "root"
    (root / "usr/lib/asterisk/modules").mkdir(parents=True)
    etc = render(load(config_path), Installation(root, "22"))
    return {path.name: path.read_text() for path in etc.iterdir()}


def test_a_dutch_number_arrives_in_any_of_its_forms() -> None:
    expected = ["+31701234567", "0031701234567", "31701234567", "0701234567"]
    for given in ("+31701234567", "0031701234567", "0701234567"):
        assert sorted(forms(given)) == sorted(expected)
    assert sorted(forms("14070")) == sorted(["14070", "+3114070", "003114070", "3114070"])


def test_numbers_go_to_the_provider_in_its_format() -> None:
    assert formatted("0612345678", "e164") == "+31612345678"
    assert formatted("+31612345678", "national") == "0612345678"
    assert formatted("0612345678", "international") == "0031612345678"
    assert formatted("+4930123456", "national") == "004930123456"
    assert formatted("14070", "e164") == "14070"


def test_a_tls_phone_needs_certificates(tmp_path: Path) -> None:
    message = problem(tmp_path, PHONE + 'transport = "tls"\n')
    assert message.endswith("phone 2001 uses tls but [tls] has no cert_file")


def test_https_needs_certificates(tmp_path: Path) -> None:
    assert problem(tmp_path, "[tls]\nhttps = true\n").endswith(
        "tls: https needs cert_file and key_file"
    )


def test_a_trunk_server_needs_credentials(tmp_path: Path) -> None:
    message = problem(tmp_path, '[trunk]\nserver = "sip.provider.example"\nusername = "u"\n')
    assert message.endswith("trunk: a trunk with a server needs username and password")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('password = "geheim;x"', "trunk.password"),
        ('password = "geheim\\n[evil]"', "trunk.password"),
        ('server = "provider.example\\n"', "trunk.server"),
        ('dids = ["+3170 1234567"]', "trunk.dids"),
    ],
)
def test_trunk_values_that_would_break_pjsip_conf_are_refused(
    tmp_path: Path, line: str, key: str
) -> None:
    base = {"server": '"provider.example:5060"', "username": '"u"', "password": '"p"'}
    name = line.split(" ")[0]
    base[name] = line.split(" = ", 1)[1]
    text = "[trunk]\n" + "".join(f"{k} = {v}\n" for k, v in base.items())
    assert f": {key}" in problem(tmp_path, text)


def test_selfsigned_pair_has_a_private_key_and_this_machines_names(tmp_path: Path) -> None:
    config = load(demo_certs(tmp_path))
    key = Path(config.tls.key_file)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(Path(config.tls.cert_file).read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(a) for a in names.get_values_for_type(x509.IPAddress)}
    # The same pair serves HTTPS.
    context = server_context(load(demo_certs(tmp_path / "h", "https = true\n")).tls)
    assert isinstance(context, ssl.SSLContext)


def test_selfsigned_keeps_existing_files(tmp_path: Path) -> None:
    path = demo_certs(tmp_path)
    before = (tmp_path / "tls/key.pem").read_bytes()
    assert main(["tls", "selfsigned", "--config", str(path)]) == 1
    assert (tmp_path / "tls/key.pem").read_bytes() == before


def test_a_tls_phone_gets_srtp_and_is_never_optimistic(tmp_path: Path) -> None:
    files = rendered(tmp_path, demo_certs(tmp_path, PHONE + 'transport = "tls"\n'))
    pjsip = files["pjsip.conf"]
    assert "protocol = tls" in pjsip
    phone = pjsip.split("[2001]\ntype = endpoint")[1].split("\n\n")[0]
    assert "transport = transport-tls" in phone
    assert "media_encryption = sdes" in phone
    assert "media_encryption_optimistic = no" in phone
    # Asterisk reads its copies of the files inside its instance, never readable by others.
    keys = tmp_path / "root/instance/keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "key.pem").stat().st_mode) == 0o600
    assert "priv_key_file = /instance/keys/key.pem" in pjsip


def test_a_registered_trunk_renders_registration_auth_and_dids(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[trunk]\nserver = "192.0.2.10:5070"\nusername = "gemeente"\npassword = "s3cret"\n'
        'dids = ["+31701234567"]\nnumber_format = "e164"\n'
        '[callbacks]\ncaller_id = "0701234567"\n',
    )
    files = rendered(tmp_path, path)
    pjsip, dialplan = files["pjsip.conf"], files["extensions.conf"]
    assert "type = registration" in pjsip
    assert "server_uri = sip:192.0.2.10:5070" in pjsip
    assert "client_uri = sip:gemeente@192.0.2.10:5070" in pjsip
    assert "password = s3cret" in pjsip
    assert "match = 192.0.2.10" in pjsip
    assert "outbound_auth = trunk-auth" in pjsip
    for form in ("+31701234567", "0031701234567", "0701234567"):
        assert f"exten => {form},1,Goto(bereik-main,s,1)" in dialplan
    assert "Set(CALLERID(num)=+31701234567)" in dialplan


def test_without_a_trunk_server_nothing_registers(tmp_path: Path) -> None:
    pjsip = rendered(tmp_path, write(tmp_path, PHONE))["pjsip.conf"]
    assert "type = registration" not in pjsip
    assert "transport-tls" not in pjsip
