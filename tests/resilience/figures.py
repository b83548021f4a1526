"""Each resilience test prints its figures and appends them to one record file; the docs'
tables of measured figures are made from it.

`python -m tests.resilience.figures --markdown` prints the table from the last record of
each test in test-artifacts/resilience-figures.jsonl; `--docs` puts each test's row on its
topic's page (docs/nodes.md, docs/several-processes.md, docs/security.md, else
docs/faults.md), between the page's `resilience` figure markers (bench/docfigures.py),
with the date each row was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import docfigures

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
RECORDS = ARTIFACTS / "resilience-figures.jsonl"
HERE = Path(__file__).resolve().parent
COMMAND = "python -m tests.resilience.figures --docs"
BLOCK = "resilience"
# The topic page of each test module's figures; the rest go to docs/faults.md.
PAGES = {
    "test_nodes.py": "docs/nodes.md",
    "test_several_processes.py": "docs/several-processes.md",
    "test_several_processes_restore.py": "docs/several-processes.md",
    "test_security.py": "docs/security.md",
    "test_login_flood.py": "docs/security.md",
}
DEFAULT_PAGE = "docs/faults.md"


class Figures:
    def __init__(self, test: str) -> None:
        self.test = test
        # The table's first column; the test's name until the test names it.
        self.title = test
        self.values: dict[str, object] = {}

    def __setitem__(self, name: str, value: object) -> None:
        self.values[name] = value

    def report(self) -> None:
        line = ", ".join(f"{name}: {value}" for name, value in self.values.items())
        print(f"\n[figures] {self.test}: {line}")
        ARTIFACTS.mkdir(exist_ok=True)
        with RECORDS.open("a") as handle:
            record = {
                "test": self.test,
                "title": self.title,
                "figures": self.values,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": docfigures.machine(),
                "commit": docfigures.commit(),
                # "tests/resilience/test_x.py::test_y (teardown)": the file, whatever its name.
                "module": Path(os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[0]).name,
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def latest(path: Path) -> dict[str, dict[str, object]]:
    """The last record of each test, by title, in the order the tests first appear."""
    records: dict[str, dict[str, object]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if "figures" in record:
                records[str(record["title"])] = record
    return records


def title(record: dict[str, object]) -> str:
    # Tests number their scenarios after the issue that asked for them; the docs do not.
    return re.sub(r"^\d+(\.\d+)*\.?\s+", "", str(record["title"]))


def when(record: dict[str, object]) -> str:
    at, commit = record.get("at"), record.get("commit")
    parts = [str(at).replace("T", " ")[:16]] if at else []
    return ", ".join(parts + ([str(commit)] if commit else [])) or "-"


def row(record: dict[str, object]) -> str:
    figures = record["figures"]
    assert isinstance(figures, dict)
    text = ", ".join(f"{name}: {value}" for name, value in figures.items())
    return f"| {title(record)} | {text.replace('|', '/')} | {when(record)} |"


def markdown(records: dict[str, dict[str, object]]) -> str:
    header = ["| test | figures | measured (UTC, commit) |", "|---|---|---|"]
    return "\n".join([*header, *(row(r) for r in records.values())]) + "\n"


def module_of(record: dict[str, object]) -> str | None:
    """The file in tests/resilience that defines the record's test: as recorded, else found
    by the test's name in the record's commit (a test may be renamed since), else in the
    work tree."""
    if record.get("module"):
        return str(record["module"])
    name = str(record["test"]).split("[", 1)[0]
    pattern = rf"^(async )?def {re.escape(name)}\("
    commit = str(record.get("commit") or "").removesuffix("+changes")
    if commit:
        found = subprocess.run(
            ["git", "-C", str(REPO), "grep", "-l", "-E", pattern, commit, "--", str(HERE)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if found:
            return Path(found[0].split(":", 1)[1]).name
    for path in sorted(HERE.glob("test_*.py")):
        if re.search(pattern, path.read_text(), re.M):
            return path.name
    return None


def by_page(records: dict[str, dict[str, object]]) -> dict[str, dict[str, dict[str, object]]]:
    pages: dict[str, dict[str, dict[str, object]]] = {}
    for key, record in records.items():
        page = PAGES.get(module_of(record) or "", DEFAULT_PAGE)
        pages.setdefault(page, {})[key] = record
    return pages


def write_docs(
    records: dict[str, dict[str, object]],
    source: Path,
    repo: Path = REPO,
    commit: str | None = None,
    command: str = COMMAND,
) -> None:
    """Each page's block: the rows of its tests, stamped with the newest record's time and
    machine (records without them: the record file's time, this machine's cores). `commit`
    names the commit of records that do not name their own."""
    if commit:
        records = {k: {"commit": commit, **r} for k, r in records.items()}
    for page, rows in by_page(records).items():
        times = [str(r["at"]) for r in rows.values() if r.get("at")]
        machines = [str(r["machine"]) for r in rows.values() if r.get("machine")]
        if times:
            moment = datetime.fromisoformat(max(times))
        else:
            moment = datetime.fromtimestamp(source.stat().st_mtime, UTC)
        machine = machines[-1] if machines else docfigures.machine(load=False)
        docfigures.rewrite(
            repo / page, BLOCK, markdown(rows), command=command, when=moment, on=machine
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=Path, default=RECORDS)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="print the table")
    what.add_argument("--docs", action="store_true", help="put the rows on their docs pages")
    parser.add_argument("--commit", help="the commit of records that do not name one")
    args = parser.parse_args(argv)
    records = latest(args.records)
    if not records:
        print(f"no figures in {args.records}: run the resilience tests first", file=sys.stderr)
        return 1
    if args.markdown:
        sys.stdout.write(markdown(records))
        return 0
    try:
        argv = sys.argv[1:] if argv is None else argv
        command = " ".join(["python -m tests.resilience.figures", *argv])
        write_docs(records, args.records, commit=args.commit, command=command)
    except docfigures.MarkersMissing as error:
        print(f"figures: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
