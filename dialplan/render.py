"""Rendering the Asterisk configuration of one exchange from the templates in deploy/asterisk.

The dialplan is split in one template per feature (deploy/asterisk/dialplan/*.conf.j2),
all included by extensions.conf.j2, so each part of the call path reads on its own.
"""

from __future__ import annotations

import json
import secrets as random_secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jinja2

from dialplan import calls_out
from dialplan.asterisk import Installation
from dialplan.config import Config, ConfigError
from dialplan.logs import LOGROTATE_FILE, logrotate_conf
from dialplan.music import make_music
from dialplan.numbers import formatted, main_number_forms
from dialplan.private import locked, private_dir, restrict, write_private

TEMPLATES = Path(__file__).resolve().parents[1] / "deploy" / "asterisk"

MODULES = [
    # SIP
    "res_pjproject.so",
    "res_sorcery_config.so",
    "res_sorcery_memory.so",
    "res_sorcery_astdb.so",
    "res_pjsip.so",
    "res_pjsip_session.so",
    "chan_pjsip.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_registrar.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_sdp_rtp.so",
    "res_pjsip_dtmf_info.so",
    "res_pjsip_pubsub.so",
    "res_pjsip_refer.so",
    "res_pjsip_nat.so",
    "res_pjsip_rfc3326.so",
    "res_pjsip_logger.so",
    "res_pjsip_diversion.so",
    # security events (failed auth, unknown endpoint, ACL) to log/security.log, for fail2ban
    "res_security_log.so",
    # the registered trunk, and SRTP for phones on TLS
    "res_pjsip_outbound_registration.so",
    "res_pjsip_outbound_authenticator_digest.so",
    "res_srtp.so",
    "res_rtp_asterisk.so",
    "res_timing_timerfd.so",
    # media
    "codec_ulaw.so",
    "codec_alaw.so",
    "codec_gsm.so",
    "codec_a_mu.so",
    "codec_resample.so",
    "format_gsm.so",
    "format_wav.so",
    "format_pcm.so",
    "format_sln.so",
    # bridges and transfers
    "bridge_simple.so",
    "bridge_native_rtp.so",
    "bridge_builtin_features.so",
    "bridge_holding.so",
    "app_blind_transfer.so",
    # coaching (cti/coaching): ChanSpy on the agent's channel; Originate for the tone
    "app_chanspy.so",
    "app_originate.so",
    # quality recordings (cti/voice/quality.py): MixMonitor, and StopMixMonitor for the agent
    "app_mixmonitor.so",
    # dialplan
    "pbx_config.so",
    "res_speech.so",
    "res_agi.so",
    "app_dial.so",
    "app_playback.so",
    "app_stack.so",
    "app_verbose.so",
    "app_record.so",
    "app_read.so",
    "app_userevent.so",
    "app_exec.so",
    "app_senddtmf.so",
    "app_echo.so",
    # the waiting lines (kcc.mode or a team's mode = "queue"): app_queue, its music, device states,
    # CUT for the virtual hold's placeholder
    "app_queue.so",
    "res_musiconhold.so",
    "func_devstate.so",
    "func_cut.so",
    "func_callerid.so",
    "func_strings.so",
    "func_logic.so",
    "func_channel.so",
    "func_global.so",
    "func_hangupcause.so",
    "func_pjsip_endpoint.so",
    "func_cdr.so",
    "func_timeout.so",
    # a call's end for the AMI listener (CEL LINKEDID_END; CDR events are read by nobody)
    "cel_manager.so",
]

# Events the CTI never reads: Asterisk does not even format them (advanced eventfilter),
# and `bereik serve` does not parse them. What it reads: Newchannel, DialBegin, DialEnd,
# Hangup, BlindTransfer, AttendedTransfer, CEL (LINKEDID_END), UserEvent (ours),
# OriginateResponse, and app_queue's QueueCallerJoin/Leave and Agent{Connect,Complete,
# RingNoAnswer}. The call-class events below were two thirds of a call's events (14 of
# 22 in tests/e2e/data/ami_stream.txt) and each cost a parse in Python.
DROPPED_EVENTS = [
    "VarSet",
    "Newexten",
    "AGIExecStart",
    "AGIExecEnd",
    "RTCPSent",
    "RTCPReceived",
    "DeviceStateChange",
    "ExtensionStatus",
    "ContactStatus",
    "PeerStatus",
    "Registry",
    "SuccessfulAuth",
    "ChallengeSent",
    "RequestBadFormat",
    "InvalidAccountID",
    "TestEvent",
    # call class, not read
    "Newstate",
    "NewConnectedLine",
    "NewCallerid",
    "NewAccountCode",
    "SoftHangupRequest",
    "HangupRequest",
    "DialState",
    "BridgeCreate",
    "BridgeDestroy",
    "BridgeEnter",
    "BridgeLeave",
    "BridgeMerge",
    "LocalBridge",
    "LocalOptimizationBegin",
    "LocalOptimizationEnd",
    "MusicOnHoldStart",
    "MusicOnHoldStop",
    "Hold",
    "Unhold",
    # agent class (app_queue), not read
    "AgentCalled",
    "AgentDump",
    "QueueCallerAbandon",
    "QueueMemberStatus",
]


CORE_DIALPLAN = {"entry.conf.j2", "main.conf.j2", "kcc.conf.j2", "team.conf.j2", "internal.conf.j2"}


@dataclass(frozen=True)
class Directories:
    """Directories as Asterisk sees them."""

    instance: str
    modules: str
    data: str = "/usr/share/asterisk"
    etc_override: str = ""
    # Several nodes play the same prompts: from the cluster's directory ([asterisk] shared_dir).
    shared: str = ""

    @property
    def etc(self) -> str:
        return self.etc_override or f"{self.instance}/etc"

    @property
    def lib(self) -> str:
        return f"{self.instance}/lib"

    @property
    def run(self) -> str:
        return f"{self.instance}/run"

    @property
    def log(self) -> str:
        return f"{self.instance}/log"

    @property
    def spool(self) -> str:
        return f"{self.instance}/spool"

    @property
    def sounds(self) -> str:
        return f"{self.shared or self.instance}/sounds"


@dataclass(frozen=True)
class Secrets:
    ami: str
    phones: dict[str, str]
    agi: str  # the first path segment of every FastAGI URL in the dialplan
    # Kamailio's mark on a trunk call it hands to a node (X-Bereik-Trunk), which the nodes
    # trust as the trunk; Kamailio strips it from every request it receives.
    edge: str = ""


def load_secrets(path: Path, config: Config) -> Secrets:
    """The generated secrets of this instance, creating those that are missing.

    Kept beside the rendered files (mode 0600), never in the repository, and stable across
    renders so phones stay registered. Several processes load them at once (two `bereik
    serve` starting together, a render beside them): under a lock, and written only when
    a secret was added, so each gets the ones Asterisk was given. A file that is there but
    unreadable is an error, never replaced by new secrets (that would lock every phone and
    process out of Asterisk).
    """
    private_dir(path.parent)
    with locked(path):
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = "{}"
        except OSError as exc:
            raise ConfigError(f"cannot read the secrets file {path}: {exc.strerror}") from None
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError as exc:
            raise ConfigError(
                f"the secrets file {path} is not JSON ({exc}); restore it from the backup"
            ) from None
        before = json.dumps(data, sort_keys=True)
        data.setdefault("ami", random_secrets.token_urlsafe(24))
        data.setdefault("agi", random_secrets.token_urlsafe(24))
        data.setdefault("edge", random_secrets.token_urlsafe(24))
        phones: dict[str, str] = data.setdefault("phones", {})
        for phone in config.phones:
            phones.setdefault(phone.extension, random_secrets.token_urlsafe(12))
        if json.dumps(data, sort_keys=True) != before:
            write_private(path, json.dumps(data, indent=1))
        else:
            restrict(path)
    return Secrets(ami=data["ami"], phones=phones, agi=data["agi"], edge=data["edge"])


def templates(folder: Path) -> jinja2.Environment:
    """The Jinja environment for a folder of configuration templates (Asterisk, Kamailio):
    an unknown name is an error, and block tags leave no blank lines."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def secrets_file(installation: Installation, config: Config) -> Path:
    """The instance's secrets; a node's are the cluster's (one AMI, AGI and phone password
    set for every node, so a phone and `bereik serve` sign in to each alike)."""
    shared = config.asterisk.shared_dir or config.asterisk.instance_dir
    return installation.host_path(shared) / "secrets.json"


def instance_data_dir(installation: Installation, instance_host: Path, dirs: Directories) -> str:
    """This instance's own astdatadir: Asterisk's (links to each entry), and in ``sounds``
    a directory per language of Bereik's own (``nl_bereik``: the waiting line's position
    sounds, made by `bereik serve`), which Asterisk finds for a channel in that language
    and falls back from to ``nl`` and ``en`` for every other sound. Returns it as Asterisk
    sees it."""
    shared = installation.host_path(dirs.data)
    data = private_dir(instance_host / "data")
    private_dir(data / "sounds")
    for source, target_dir in ((shared, data), (shared / "sounds", data / "sounds")):
        for entry in source.iterdir() if source.is_dir() else ():
            link = target_dir / entry.name
            if entry.name == "sounds" and target_dir == data:
                continue
            if not link.is_symlink() and not link.exists():
                # As Asterisk sees it (inside its chroot, if it has one).
                link.symlink_to(f"{dirs.data}/{entry.relative_to(shared)}")
    return f"{dirs.instance}/data"


def render(config: Config, installation: Installation, out_dir: Path | None = None) -> Path:
    """Write every configuration file of this instance; return the etc directory on the host."""
    instance_host = installation.host_path(config.asterisk.instance_dir)
    dirs = Directories(
        instance=config.asterisk.instance_dir,
        modules=installation.modules_dir,
        shared=config.asterisk.shared_dir,
    )
    etc = installation.host_path(dirs.etc)
    if out_dir is not None:
        etc = out_dir.resolve()
        if etc.is_relative_to(installation.root):
            # Asterisk reads the files where they were written.
            inside = "/" + str(etc.relative_to(installation.root))
            dirs = Directories(dirs.instance, dirs.modules, etc_override=inside, shared=dirs.shared)
    # Logs, recordings and spoken numbers are personal data; etc holds the secrets.
    private_dir(instance_host)
    for sub in ("etc", "lib", "run", "log", "spool", "sounds", "lib/agi-bin"):
        private_dir(instance_host / sub)
    secrets = load_secrets(secrets_file(installation, config), config)
    tls_files = _copy_tls_files(config, instance_host, dirs)
    if config.waiting_lines():
        make_music(installation.host_path(dirs.sounds) / "moh")
        dirs = replace(dirs, data=instance_data_dir(installation, instance_host, dirs))
    if config.outbound_trunk:
        calls_out.make_refusals(
            installation.host_path(dirs.sounds) / calls_out.SUBDIRECTORY, config.exchange.language
        )
    environment = templates(TEMPLATES)
    context = {
        "config": config,
        "dirs": dirs,
        "secrets": secrets,
        "modules": MODULES,
        "dropped_events": DROPPED_EVENTS,
        # Through HAProxy when several processes share the calls ([asterisk] fastagi);
        # the path starts with the FastAGI secret either way.
        "agi": "agi://"
        + (config.asterisk.fastagi or f"{config.server.agi_host}:{config.server.agi_port}")
        + f"/{secrets.agi}",
        "phones": {phone.extension: phone for phone in config.phones},
        "tls_files": tls_files,
        # The post-call survey changes Dial and Queue (g, c) only where it is asked.
        "survey_on": any(config.survey.shares.values()),
        "dids": main_number_forms(
            config.trunk.dids, config.exchange.main_number, config.trunk.country_code
        ),
        "callback_caller_id": formatted(
            config.callbacks.caller_id or config.exchange.main_number,
            config.trunk.number_format,
            config.trunk.country_code,
        ),
        "out": calls_out.plan(config, dirs.sounds),
        "premium": calls_out.PREMIUM,
        "extra_dialplan": sorted(
            path.name
            for path in (TEMPLATES / "dialplan").glob("*.conf.j2")
            if path.name not in CORE_DIALPLAN
        ),
    }
    private_dir(etc)
    for template in sorted(TEMPLATES.glob("*.conf.j2")):
        text = environment.get_template(template.name).render(context)
        # 0600: manager.conf, pjsip.conf and extensions.conf carry secrets; the others
        # the same, so none is forgotten when a template gains one.
        write_private(etc / template.name.removesuffix(".j2"), text)
    # Asterisk's logs name callers: rotated and deleted on the call term (dialplan/logs.py).
    rotate = etc / LOGROTATE_FILE
    write_private(rotate, logrotate_conf(instance_host / "log", rotate, config.retention.call_days))
    return etc


# The system's CA store (Debian's ca-certificates): what a TLS trunk's provider is verified
# against when [tls] has no ca_file.
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


def _copy_tls_files(config: Config, instance_host: Path, dirs: Directories) -> dict[str, str]:
    """Copy the certificate, key and CA into the instance (0600 in a 0700 directory), as
    Asterisk sees them: a chrooted Asterisk cannot read the host's paths (nor has a CA
    store of its own, so a TLS trunk without ca_file gets a copy of the system's)."""
    tls = config.tls
    if not tls.enabled:
        return {}
    keys = private_dir(instance_host / "keys")
    files = {}
    ca = tls.ca_file or (SYSTEM_CA_FILE if config.trunk.transport == "tls" else "")
    for name, source in (("cert", tls.cert_file), ("key", tls.key_file), ("ca", ca)):
        if not source:
            continue
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigError(f"tls: cannot read {source}: {exc.strerror}") from None
        write_private(keys / f"{name}.pem", data)
        files[name] = f"{dirs.instance}/keys/{name}.pem"
    return files
