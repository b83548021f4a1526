"""Each resilience test prints its figures and appends them to one table for the README.

`python -m tests.resilience.figures --markdown` prints the table from the last record of
each test in test-artifacts/resilience-figures.jsonl; `--readme README.md` puts those rows
into the README's table in place (rows of tests that did not run are left as they are).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RECORDS = ARTIFACTS / "resilience-figures.jsonl"
HEADER = "| test | figures |"


class Figures:
    def __init__(self, test: str) -> None:
        self.test = test
        # The README table's first column; the test's name until the test names it.
        self.title = test
        self.values: dict[str, object] = {}

    def __setitem__(self, name: str, value: object) -> None:
        self.values[name] = value

    def report(self) -> None:
        line = ", ".join(f"{name}: {value}" for name, value in self.values.items())
        print(f"\n[figures] {self.test}: {line}")
        ARTIFACTS.mkdir(exist_ok=True)
        with RECORDS.open("a") as handle:
            record = {"test": self.test, "title": self.title, "figures": self.values}
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


def row(record: dict[str, object]) -> str:
    figures = record["figures"]
    assert isinstance(figures, dict)
    text = ", ".join(f"{name}: {value}" for name, value in figures.items())
    return f"| {record['title']} | {text.replace('|', '/')} |"


def markdown(records: dict[str, dict[str, object]]) -> str:
    return "\n".join([HEADER, "|---|---|", *(row(r) for r in records.values())]) + "\n"


def update_readme(readme: str, records: dict[str, dict[str, object]]) -> str:
    """The README with the table's rows replaced by the records of the same title; a
    record with no row yet is added at the end of the table."""
    lines = readme.splitlines()
    start = lines.index(HEADER)
    end = start + 2
    while end < len(lines) and lines[end].startswith("| "):
        end += 1
    rows = lines[start + 2 : end]
    left = dict(records)
    for index, existing in enumerate(rows):
        title = existing[2:].split(" | ", 1)[0]
        if title in left:
            rows[index] = row(left.pop(title))
    rows += [row(record) for record in left.values()]
    return "\n".join([*lines[: start + 2], *rows, *lines[end:]]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=Path, default=RECORDS)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="print the table")
    what.add_argument("--readme", type=Path, help="update the table in this README")
    args = parser.parse_args(argv)
    records = latest(args.records)
    if not records:
        print(f"no figures in {args.records}: run the resilience tests first", file=sys.stderr)
        return 1
    if args.markdown:
        sys.stdout.write(markdown(records))
    else:
        args.readme.write_text(update_readme(args.readme.read_text(), records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
