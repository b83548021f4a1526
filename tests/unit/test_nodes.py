"""Several nodes behind Kamailio: the per-node view of the configuration, the rendered
Kamailio files (checked by Kamailio itself), and the tracker's per-node resync."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cti.calls.tracker import CallTracker, Ended
from dialplan.asterisk import Installation
from dialplan.config import ConfigError, load
from dialplan.kamailio import KamailioProcess, render_kamailio
from dialplan.render import render, secrets_file

NODES = """
[asterisk]
instance_dir = "/var/lib/bereik/cluster"

[[phones]]
extension = "2001"

[kcc]
agents = ["2001"]

[kamailio]
sip_port = 5060
rpc_port = 5071
instance_dir = "{kamailio}"

[[nodes]]
name = "a"
sip_port = 5160
ami_port = 5039
instance_dir = "/var/lib/bereik/node-a"

[[nodes]]
name = "b"
sip_port = 5260
ami_port = 5040
instance_dir = "/var/lib/bereik/node-b"
"""


def configured(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "bereik.toml"
    path.write_text(NODES.format(kamailio=tmp_path / "kamailio") + extra)
    return path


def installation(tmp_path: Path) -> Installation:
    root = tmp_path / "root"
    (root / "usr/lib/asterisk/modules").mkdir(parents=True, exist_ok=True)
    return Installation(root, "22")


def test_a_node_gets_its_own_ports_directory_and_systemname(tmp_path: Path) -> None:
    config = load(configured(tmp_path))
    node = config.node("b").asterisk
    assert (node.sip_port, node.ami_port, node.systemname) == (5260, 5040, "b")
    assert node.instance_dir == "/var/lib/bereik/node-b"
    assert node.shared_dir == "/var/lib/bereik/cluster"
    with pytest.raises(ConfigError, match="no node 'c'"):
        config.node("c")


def test_two_nodes_on_one_port_are_refused(tmp_path: Path) -> None:
    path = configured(tmp_path)
    path.write_text(path.read_text().replace("sip_port = 5260", "sip_port = 5160"))
    with pytest.raises(ConfigError, match="same host and sip_port"):
        load(path)


def test_nodes_share_secrets_and_sounds_and_differ_in_systemname(tmp_path: Path) -> None:
    config = load(configured(tmp_path))
    where = installation(tmp_path)
    files = {}
    for name in ("a", "b"):
        etc = render(config.node(name), where)
        files[name] = {path.name: path.read_text() for path in etc.iterdir()}
    assert "systemname = a" in files["a"]["asterisk.conf"]
    assert "systemname = b" in files["b"]["asterisk.conf"]
    # One set of secrets, the cluster's: the same phone password and AMI secret on both.
    secrets = json.loads(secrets_file(where, config).read_text())
    for name in ("a", "b"):
        assert f"password = {secrets['phones']['2001']}" in files[name]["pjsip.conf"]
        assert f"secret = {secrets['ami']}" in files[name]["manager.conf"]
    assert "directory = /var/lib/bereik/cluster/sounds/moh" in files["a"]["musiconhold.conf"]
    # A registering phone is reached through Kamailio.
    assert "contact = sip:2001@127.0.0.1:5060" in files["a"]["pjsip.conf"]


def test_rendered_kamailio_files_are_private_and_accepted_by_kamailio(tmp_path: Path) -> None:
    config = load(configured(tmp_path))
    where = installation(tmp_path)
    home = render_kamailio(config, where)
    secrets = json.loads(secrets_file(where, config).read_text())
    cfg = (home / "kamailio.cfg").read_text()
    assert f'"{secrets["phones"]["2001"]}"' in cfg  # the password the nodes have
    listed = (home / "dispatcher.list").read_text()
    assert "1 sip:127.0.0.1:5160 8 0 duid=a" in listed
    assert "1 sip:127.0.0.1:5260 8 0 duid=b" in listed
    for path in (home / "kamailio.cfg", home / "dispatcher.list"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    KamailioProcess(config).check()  # kamailio -c: the syntax and every module parameter


def test_resync_of_a_restarted_node_interrupts_only_its_own_calls() -> None:
    tracker = CallTracker("14070", "7000", {}, clock=lambda: 10.0)
    for uniqueid in ("a-1.1", "b-1.1"):
        tracker.feed({
            "Event": "Newchannel", "Uniqueid": uniqueid, "Linkedid": uniqueid,
            "Channel": f"PJSIP/trunk-{uniqueid}", "Context": "from-trunk", "Exten": "14070",
            "CallerIDNum": "0612345678",
        })  # fmt: skip
    assert set(tracker.calls) == {"a-1.1", "b-1.1"}
    effects = tracker.resync([], node="a", restarted=True)
    ended = [e for e in effects if isinstance(e, Ended)]
    assert [(e.uniqueid, e.outcome) for e in ended] == [("a-1.1", "interrupted")]
    assert set(tracker.calls) == {"b-1.1"}
