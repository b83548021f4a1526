"""Each resilience test prints its figures and appends them to one table for the README."""

from __future__ import annotations

import json
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class Figures:
    def __init__(self, test: str) -> None:
        self.test = test
        self.values: dict[str, object] = {}

    def __setitem__(self, name: str, value: object) -> None:
        self.values[name] = value

    def report(self) -> None:
        line = ", ".join(f"{name}: {value}" for name, value in self.values.items())
        print(f"\n[figures] {self.test}: {line}")
        ARTIFACTS.mkdir(exist_ok=True)
        with (ARTIFACTS / "resilience-figures.jsonl").open("a") as handle:
            handle.write(json.dumps({"test": self.test, **self.values}) + "\n")
