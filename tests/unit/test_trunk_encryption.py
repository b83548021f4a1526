"""A TLS trunk verifies its provider (against [tls] ca_file, else the system's CA store),
and SRTP on the trunk when `trunk.media_encryption = "sdes"`: the rendered pjsip.conf. The
real provider (a second Asterisk) in tests/e2e/test_trunk_encryption.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bereik.cli import main
from dialplan.asterisk import Installation
from dialplan.config import ConfigError, load
from dialplan.render import SYSTEM_CA_FILE, render

TRUNK = '[trunk]\nserver = "192.0.2.10:5061"\nusername = "u"\npassword = "p"\n'


def config_file(tmp_path: Path, tls: str, trunk: str) -> Path:
    path = tmp_path / "bereik.toml"
    path.write_text(
        f'[asterisk]\ninstance_dir = "/instance"\n[tls]\ncert_file = "{tmp_path}/tls/cert.pem"\n'
        f'key_file = "{tmp_path}/tls/key.pem"\n{tls}{TRUNK}{trunk}'
    )
    assert main(["tls", "selfsigned", "--config", str(path)]) == 0
    return path


def pjsip(tmp_path: Path, tls: str = "", trunk: str = 'transport = "tls"\n') -> str:
    root = tmp_path / "root"
    (root / "usr/lib/asterisk/modules").mkdir(parents=True, exist_ok=True)
    etc = render(load(config_file(tmp_path, tls, trunk)), Installation(root, "22"))
    return (etc / "pjsip.conf").read_text()


def transport(text: str) -> str:
    return text.split("[transport-tls]")[1].split("\n\n")[0]


def trunk_endpoint(text: str) -> str:
    return text.split("[trunk]\ntype = endpoint")[1].split("\n\n")[0]


def test_a_tls_trunk_without_a_ca_file_verifies_against_the_system_store(tmp_path: Path) -> None:
    section = transport(pjsip(tmp_path))
    assert "verify_server = yes" in section
    assert "ca_list_file = /instance/keys/ca.pem" in section
    copied = tmp_path / "root/instance/keys/ca.pem"
    assert copied.read_bytes() == Path(SYSTEM_CA_FILE).read_bytes()


def test_a_configured_ca_file_is_the_one_trusted(tmp_path: Path) -> None:
    ca = tmp_path / "provider-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n...\n")
    section = transport(pjsip(tmp_path, tls=f'ca_file = "{ca}"\n'))
    assert "verify_server = yes" in section
    assert (tmp_path / "root/instance/keys/ca.pem").read_text() == ca.read_text()


def test_srtp_on_the_trunk_when_configured_and_never_optimistic(tmp_path: Path) -> None:
    trunk = trunk_endpoint(pjsip(tmp_path, trunk='transport = "tls"\nmedia_encryption = "sdes"\n'))
    assert "media_encryption = sdes" in trunk
    assert "media_encryption_optimistic = no" in trunk
    assert "transport = transport-tls" in trunk


def test_without_it_the_trunk_has_no_srtp(tmp_path: Path) -> None:
    assert "media_encryption" not in trunk_endpoint(pjsip(tmp_path))


def test_srtp_keys_never_travel_over_udp(tmp_path: Path) -> None:
    path = tmp_path / "bereik.toml"
    path.write_text(TRUNK + 'media_encryption = "sdes"\n')
    with pytest.raises(ConfigError, match=r"media_encryption = sdes needs a server and transport"):
        load(path)
