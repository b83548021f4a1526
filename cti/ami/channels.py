"""Asterisk channel names, read in one place."""

from __future__ import annotations

import re

# PJSIP/<endpoint>-<sequence>: the endpoint of a phone is its extension.
_PJSIP = re.compile(r"^PJSIP/(?P<endpoint>[^/]+)-[^-/]+$")


_INTERFACE = re.compile(r"^PJSIP/(?P<endpoint>[^/-]+)$")


def extension_of_member(interface: str) -> str:
    """A queue member's interface ``PJSIP/2001`` (app_queue's Interface header, no channel
    sequence) -> ``2001``; "" for anything else."""
    match = _INTERFACE.match(interface or "")
    return match["endpoint"][:32] if match else extension_of(interface)


def extension_of(channel: str) -> str:
    """``PJSIP/3001-0000000a`` -> ``3001``; "" for any other channel (Local/, a dial string)."""
    match = _PJSIP.match(channel or "")
    return match["endpoint"][:32] if match else ""


# A virtual hold's placeholder in the KCC's line (cti/queue/vhold.py):
# Local/<id>-<priority>-<arrival epoch>-<number>@bereik-vhold-line
VHOLD_PLACEHOLDER = re.compile(r"^Local/(?P<id>\d+)-\d+-(?P<since>\d+)-[^@]*@bereik-vhold-line")


def is_vhold_placeholder(channel: str) -> bool:
    """The Local channel that holds a virtual-hold caller's place in the KCC's line."""
    return VHOLD_PLACEHOLDER.match(channel) is not None
