"""Where `bereik serve` spends its CPU, per part of the call path, from py-spy's stacks.

    python -m bench.profile DIR [DIR ...]    # the --profile directories of bench runs
    python -m bench.profile --write-docs bench/README.md profiles/BEFORE profiles/AFTER


Each sample (one stack) counts for the innermost frame that belongs to a part: a
SQLAlchemy query made by the IVR handler is database time, the handler's own Python is
handler time, the asyncio machinery under no part of ours is the event loop. The table has
one column per profile file, so a before and an after sit side by side.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bench import docfigures

# (part, library path fragments, our path prefixes), checked in this order for each frame
# from the innermost out. Our paths are relative to the repository (py-spy is given full
# file names; the part from our top-level package on is kept), libraries' are absolute.
PARTS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "database",
        ("/sqlalchemy/", "/aiosqlite/", "/asyncpg/", "/sqlite3/", "/alembic/"),
        ("cti/store/",),
    ),
    ("AMI parsing (panoramisk, client)", ("/panoramisk/",), ("cti/ami/",)),
    ("call tracker and listener", (), ("cti/calls/tracker.py", "cti/calls/listener.py")),
    ("metrics", ("/prometheus_client/",), ("metrics/", "cti/calls/gauges.py")),
    ("outbox (mail)", ("/aiosmtplib/", "/smtplib.py", "/email/"), ("cti/outbox.py",)),
    (
        "SSE and web",
        ("/aiohttp/", "/jinja2/", "/multidict/", "/yarl/"),
        ("cti/calls/live.py", "cti/calls/http.py", "cti/web/"),
    ),
    ("speech (TTS cache)", (), ("cti/tts",)),
    ("FastAGI protocol", (), ("agi/server.py", "agi/protocol.py", "agi/admission.py")),
    (
        "handler logic",
        (),
        ("agi/", "cti/hoppers/", "cti/announcements/", "cti/queue/", "cti/survey/", "dialplan/"),
    ),
    ("other Bereik (schedulers, services)", (), ("cti/", "bereik/")),
]
LOOP = "event loop and the rest (asyncio, stdlib)"
FRAME = re.compile(r"\(([^():]+):\d+\)$")
OUR_PACKAGES = ("agi", "bench", "bereik", "cti", "dialplan", "metrics")
LIBRARY_MARKERS = ("/site-packages/", "/dist-packages/", "/lib/python3")


# The command's own frames, under every stack: they say nothing about the part.
ENTRY = ("bereik/__main__.py", "bereik/cli.py")


def _ours(path: str) -> str | None:
    """The repository-relative path of one of our files (any checkout), else None."""
    if any(marker in path for marker in LIBRARY_MARKERS) or path.endswith(ENTRY):
        return None
    for package in OUR_PACKAGES:
        index = path.rfind(f"/{package}/")
        if index >= 0:
            return path[index + 1 :]
    return None


def part_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        match = FRAME.search(frame)
        if match is None:
            continue
        path = match.group(1)
        relative = _ours(path)
        for part, libraries, prefixes in PARTS:
            if relative is not None and relative.startswith(prefixes):
                return part
            if relative is None and any(fragment in path for fragment in libraries):
                return part
    return LOOP


def parts(text: str) -> Counter[str]:
    """Samples per part from py-spy's raw (collapsed) output: `frame;frame;... count`."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        counts[part_of(stack.split(";"))] += int(number)
    return counts


def table(files: list[Path]) -> str:
    columns = [parts(path.read_text()) for path in files]
    names = [part for part, _, _ in PARTS] + [LOOP]
    # A column is named by its directory (a run's, named by its commit) and the row's file.
    header = "| part | " + " | ".join(f"{path.parent.name}: {path.stem}" for path in files) + " |"
    lines = [header, "|---|" + "---|" * len(files)]
    for name in names:
        cells = [f"{100 * column[name] / max(1, sum(column.values())):.1f} %" for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| samples | " + " | ".join(str(sum(c.values())) for c in columns) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def recorded(pid: int, profile_dir: Path | None, label: str) -> Iterator[None]:
    """py-spy on process `pid` meanwhile (a bench's --profile DIR), as collapsed stacks in
    DIR/label.txt, which `python -m bench.profile DIR` sums per part; nothing without a
    DIR. The sampling costs the process a little CPU of its own: compare profiled runs
    with profiled runs."""
    if profile_dir is None:
        yield
        return
    # The virtualenv's py-spy when it is not on PATH (the bench run without activating it).
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise RuntimeError("--profile: py-spy is not installed (pip install py-spy)")
    profile_dir.mkdir(parents=True, exist_ok=True)
    profiler = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--full-filenames",
            "--output",
            str(profile_dir / f"{label}.txt"),
            "--rate",
            "250",
            "--gil",  # where the Python time goes; SQLite runs without the GIL
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)


def main(argv: list[str]) -> int:
    page = None
    if argv[:1] == ["--write-docs"] and len(argv) > 1:
        page, argv = Path(argv[1]), argv[2:]
    files = [f for arg in argv for f in sorted(Path(arg).glob("*.txt"))] or []
    if not files:
        print(
            "usage: python -m bench.profile [--write-docs PAGE] DIR [DIR ...] "
            "(py-spy raw .txt files)"
        )
        return 2
    text = table(files)
    print(text)
    if page is not None:
        # The page's before/after table: the directories name the commits compared.
        docfigures.rewrite(
            page,
            "profile",
            text,
            command=" ".join(["python -m bench.profile", *argv]),
            on=docfigures.machine(load=False),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
