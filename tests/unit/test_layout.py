"""The tests' own layout: no module imports a test module.

A test module that imports another couples two scenarios (a helper changed for one breaks
the other, and pytest may collect the imported tests twice); shared steps live in
tests/support/.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def is_test_module(module: str) -> bool:
    """A module of this tree named test_* (aiohttp.test_utils is no test module of ours)."""
    return module.startswith("tests.") and module.rpartition(".")[2].startswith("test_")


def imported_test_modules(source: str, package: str) -> list[str]:
    """The test modules (`test_*`) that a module of `package` imports, however spelled:
    `import tests.x.test_y`, `from tests.x.test_y import f`, `from tests.x import test_y`,
    `from .test_y import f`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            if is_test_module(base):
                found.append(base)
            else:
                names = [f"{base}.{a.name}" for a in node.names]
                found += [name for name in names if is_test_module(name)]
    return found


def test_no_module_of_the_tests_imports_a_test_module() -> None:
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        relative = path.relative_to(TESTS.parent)
        if "vendor" in relative.parts:
            continue
        package = ".".join(relative.parent.parts)
        imported = imported_test_modules(path.read_text(), package)
        if imported:
            offenders[str(relative)] = imported
    assert offenders == {}, "move the shared steps to tests/support/"


def test_every_spelling_of_a_test_module_import_is_found() -> None:
    source = """
import tests.e2e.test_queue
from tests.e2e.test_queue import sign_in
from tests.e2e import test_teams, mail
from .test_ivr import announce
from . import test_norms
from tests.support.waiting_line import sign_in as test_like_name
from aiohttp.test_utils import TestClient
from aiohttp import test_utils
import json
"""
    assert imported_test_modules(source, "tests.e2e") == [
        "tests.e2e.test_queue",
        "tests.e2e.test_queue",
        "tests.e2e.test_teams",
        "tests.e2e.test_ivr",
        "tests.e2e.test_norms",
    ]


def test_the_support_package_holds_no_tests() -> None:
    assert not list((TESTS / "support").glob("test_*.py"))
