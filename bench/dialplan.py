"""The bench's own extensions, appended to one instance's rendered extensions.conf.

They are not templates in deploy/asterisk/dialplan/ on purpose: everything there is
rendered into production configs. Each row's extension does the same work: three variable
sets (in the dialplan, or by AGI commands), Answer(), Wait(1), Hangup(). The AGI runs before
Answer(), so a failed AGI hangs up with cause 34 and sipp counts a failed call; the floor
does its Set()s at the same point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FLOOR, CLASSIC, BARE, BEREIK, FRAMEWORK = "9001", "9002", "9003", "9004", "9005"


@dataclass(frozen=True)
class BenchPaths:
    classic_script: str  # as Asterisk sees it (inside the chroot)
    classic_log: str
    bare_agi: str  # agi://127.0.0.1:PORT
    framework_agi: str  # agi://127.0.0.1:PORT of bench.framework_agi


def contexts(paths: BenchPaths) -> str:
    ok = '$["${AGISTATUS}" = "SUCCESS" & "${BENCH_C}${BEREIK_RESULT}" != ""]'
    tail = (
        f" same => n,GotoIf({ok}?done)\n"
        " same => n,Hangup(34)\n"
        " same => n(done),Answer()\n"
        " same => n,Wait(1)\n"
        " same => n,Hangup()\n"
    )
    return f"""
; ---- bench contexts, appended by bench/dialplan.py (bench instances only) ----
[from-trunk]
exten => {FLOOR},1,Goto(bench-floor,s,1)
exten => {CLASSIC},1,Goto(bench-classic,s,1)
exten => {BARE},1,Goto(bench-bare,s,1)
exten => {BEREIK},1,Goto(bench-bereik,s,1)
exten => {FRAMEWORK},1,Goto(bench-framework,s,1)

[bench-floor]
exten => s,1,Set(BENCH_A=1)
 same => n,Set(BENCH_B=2)
 same => n,Set(BENCH_C=3)
 same => n,Answer()
 same => n,Wait(1)
 same => n,Hangup()

[bench-classic]
exten => s,1,AGI({paths.classic_script},{paths.classic_log})
{tail}
[bench-bare]
exten => s,1,AGI({paths.bare_agi}/bench)
{tail}
[bench-framework]
exten => s,1,AGI({paths.framework_agi}/bench)
{tail}
[bench-bereik]
exten => s,1,Set(BEREIK_RESULT=)
 same => n,Set(BEREIK_ROUTE=)
 same => n,AGI(${{BEREIK_AGI}}/ivr)
{tail}"""


def append(extensions_conf: Path, paths: BenchPaths) -> None:
    text = extensions_conf.read_text()
    marker = "; ---- bench contexts"
    if marker in text:
        text = text[: text.index(marker)]
    extensions_conf.write_text(text + contexts(paths))
