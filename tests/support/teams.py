"""A team of two members for the transfer tests, and a KCC phone that transfers to a team."""

from __future__ import annotations

from bench.exchange import Exchange

TEAM_TOML = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001", "3002"]
strategy = "{strategy}"
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
"""


def transfer_phone(ex: Exchange, extension: str, target: str, talk_ms: int = 1500) -> None:
    """A KCC agent's phone that answers and then blind-transfers (REFER) to `target`."""
    phone = next(p for p in ex.phones if p.extension == extension)
    path = ex._scenario(
        "agent_refer.xml",
        {"agent": extension, "target": target, "ring": "300", "talk": str(talk_ms)},
        f"{extension}-refer",
    )
    ex.start_sipp_uas(path, phone.port, f"sipp-{extension}-refer", calls=1, trace_messages=True)
