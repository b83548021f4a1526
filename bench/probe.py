"""One fixed-rate probe of the hopper path, profiled: a before and an after of one part.

    python -m bench.probe DIR [RATE]     # default 6 calls/s for 60 s

Starts the bench's exchange (bench/run.py `Bench`: its database, Asterisk, `bereik serve`),
measures serve's idle CPU, then places calls on 14070 → IVR key 1 → team (nobody present)
→ hopper at RATE for the max-rate search's 60 s (bench/maxrate.py), with py-spy recording
serve into DIR/hopper-path-RATE.txt (and DIR/idle.txt). Prints the probe's line and its
steady window's CPU per call of Asterisk and serve. Run it for two trees one after the
other (PYTHONPATH=<tree>) to compare them at the same rate on the same machine; `python
-m bench.profile DIR_BEFORE DIR_AFTER` sums the stacks per part.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from bench.maxrate import HOPPER, STEADY_SECONDS, measured_probe, to_hopper_path
from bench.run import Bench


async def _probe(bench: Bench, rate: float) -> None:
    with bench.profile("idle"):
        await bench.idle()
    if not await to_hopper_path(bench):
        raise SystemExit("IVR → team → hopper did not work in this tree")
    probe = await measured_probe(bench, HOPPER, rate, STEADY_SECONDS)
    print(f"probe {rate:.0f}/s: {probe.summary()}", flush=True)
    steady = probe.steady
    if steady is not None and steady.ended:
        for name in ("asterisk", "serve"):
            cpu = steady.cpu[name]
            print(f"  {name}: {(cpu.own_ms + cpu.children_ms) / steady.ended:.1f} ms CPU per call")


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m bench.probe DIR [RATE]")
        return 2
    out, rate = Path(argv[0]), float(argv[1]) if len(argv) > 1 else 6.0
    bench = Bench(False, [], 1.0, Path(tempfile.mkdtemp(prefix="bereik-bench-")), out)
    try:
        bench.start()
        asyncio.run(_probe(bench, rate))
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
