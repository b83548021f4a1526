"""Certificates: the server context of HTTPS, and a self-signed pair for the demo.

The files are the ones named in `[tls]` (cert_file, key_file); Asterisk gets copies when
its configuration is rendered. `bereik tls selfsigned --config FILE` writes a pair for
this machine (names: localhost, its host name, 127.0.0.1, ::1 and the configured bind
addresses); a real site uses a certificate from its own CA or a public one.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dialplan.config import Config, ConfigError, Tls, load


def server_context(tls: Tls) -> ssl.SSLContext | None:
    """The TLS context `bereik serve` answers HTTPS with, or None for plain HTTP."""
    if not tls.https:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls: cannot load {tls.cert_file} / {tls.key_file}: {exc}") from None
    return context


def host_names(config: Config) -> list[str]:
    """The names and addresses a demo certificate must be valid for on this machine."""
    names = ["localhost", socket.gethostname(), "127.0.0.1", "::1"]
    for address in (config.asterisk.sip_bind, config.server.http_host):
        if address not in ("0.0.0.0", "::"):
            names.append(address)
    return list(dict.fromkeys(names))


def make_self_signed(cert_file: Path, key_file: Path, names: list[str], days: int = 825) -> None:
    """Write a self-signed certificate for `names` and its key (0600, never readable by others)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alternative: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        # A CA too, so phones and browsers can be told to trust exactly this file.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    for path in (cert_file, key_file):
        path.parent.mkdir(parents=True, exist_ok=True)
    _write(
        key_file,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    # Created with its final mode, so the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(mode)


# --- `bereik tls` --------------------------------------------------------------------------


def register(commands: Any) -> None:
    tls = commands.add_parser("tls", help="certificates for SIP over TLS and HTTPS")
    actions = tls.add_subparsers(required=True, metavar="ACTION")
    selfsigned = actions.add_parser(
        "selfsigned", help="write a self-signed pair to [tls] cert_file and key_file (demo)"
    )
    selfsigned.add_argument("--config", required=True, type=Path)
    selfsigned.add_argument("--force", action="store_true", help="replace existing files")
    selfsigned.set_defaults(func=cmd_selfsigned)


def cmd_selfsigned(args: argparse.Namespace) -> int:
    config = load(args.config)
    if not config.tls.enabled:
        raise ConfigError(f"{args.config}: tls: set cert_file and key_file first")
    cert, key = Path(config.tls.cert_file), Path(config.tls.key_file)
    if not args.force and (cert.exists() or key.exists()):
        print(f"bereik tls: {cert} or {key} exists; --force replaces them")
        return 1
    names = host_names(config)
    make_self_signed(cert, key, names)
    print(f"wrote {cert} and {key} (0600) for {', '.join(names)}")
    return 0
