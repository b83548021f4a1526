"""Tools the tests need, found or failed loudly: a missing tool is a failure, never a skip."""

from __future__ import annotations

import shutil

import pytest


def require_tool(name: str, debian_package: str) -> str:
    """The path of a command-line tool; fails the test (or its module) when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if path is None:
        pytest.fail(
            f"{name} is not installed (Debian package {debian_package}): "
            "run the tests through scripts/test, which installs it",
            pytrace=False,
        )
    return path
