"""sipp's message log (-trace_msg) read back: what a phone or caller sent and received, when.

Used where a test asserts what the far end saw (when a phone was rung, when it answered),
not what Bereik or Asterisk say about it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_SEPARATOR = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class SipMessage:
    at: float  # epoch seconds, this machine's clock
    sent: bool
    first_line: str
    headers: dict[str, str]

    @property
    def method(self) -> str:
        """INVITE, BYE ... for a request; "" for a response."""
        word = self.first_line.split(" ", 1)[0]
        return "" if word.startswith("SIP/") else word

    @property
    def status(self) -> int:
        parts = self.first_line.split(" ")
        return int(parts[1]) if self.first_line.startswith("SIP/") and len(parts) > 1 else 0

    @property
    def cseq_method(self) -> str:
        return self.headers.get("cseq", "").split(" ")[-1]

    @property
    def call_id(self) -> str:
        return self.headers.get("call-id", "")

    def user(self, header: str) -> str:
        """The user part of a From/To header: the number."""
        found = re.search(r"sip:([^@;>]+)@", self.headers.get(header, ""))
        return found.group(1) if found else ""


def read(path: Path) -> list[SipMessage]:
    text = path.read_text(errors="replace") if path.exists() else ""
    pieces = _SEPARATOR.split(text)
    messages = []
    for stamp, body in zip(pieces[1::2], pieces[2::2], strict=True):
        lines = body.strip("\n").splitlines()
        if len(lines) < 3:
            continue
        sent = "sent" in lines[0]
        first = lines[2].strip()
        headers: dict[str, str] = {}
        for line in lines[3:]:
            if not line.strip():
                break
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        messages.append(SipMessage(at, sent, first, headers))
    return messages
