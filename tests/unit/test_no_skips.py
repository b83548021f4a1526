"""The test command fails on a skipped test (tests/no_skips.py), run in a pytest of its own."""

from __future__ import annotations

import pytest

from tests import no_skips

SKIPPING = """
import shutil

import pytest


def test_passes():
    assert True


@pytest.mark.skipif(True, reason="tool missing")
def test_skipped_by_a_mark():
    pass


def test_skipped_inside():
    pytest.skip("no sox")


@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_to_fail():
    assert False
"""
MODULE_SKIP = """
import pytest

schemathesis = pytest.importorskip("no_such_module_for_this_test")


def test_never_collected():
    pass
"""
CLEAN = """
def test_passes():
    assert True
"""


@pytest.fixture(autouse=True)
def settings(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


@pytest.fixture
def under_test_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEREIK_NO_SKIPS", "1")
    monkeypatch.delenv("CI", raising=False)


def test_a_skipped_test_fails_the_run_and_is_named(
    pytester: pytest.Pytester, under_test_command: None
) -> None:
    pytester.makepyfile(test_skipping=SKIPPING)
    result = pytester.runpytest(plugins=[no_skips])
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*skipped tests fail this run*",
            "SKIPPED test_skipping.py::test_skipped_by_a_mark: Skipped: tool missing",
            "SKIPPED test_skipping.py::test_skipped_inside: Skipped: no sox",
        ]
    )


def test_a_module_skipped_at_import_fails_the_run(
    pytester: pytest.Pytester, under_test_command: None
) -> None:
    pytester.makepyfile(test_module_skip=MODULE_SKIP)
    result = pytester.runpytest(plugins=[no_skips])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["SKIPPED test_module_skip.py: *no_such_module_for_this_test*"])


def test_ci_true_also_fails_on_a_skip(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BEREIK_NO_SKIPS", raising=False)
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(test_skipping=SKIPPING)
    assert pytester.runpytest(plugins=[no_skips]).ret == pytest.ExitCode.TESTS_FAILED


def test_a_run_without_skips_passes(pytester: pytest.Pytester, under_test_command: None) -> None:
    pytester.makepyfile(test_clean=CLEAN)
    result = pytester.runpytest(plugins=[no_skips])
    assert result.ret == pytest.ExitCode.OK
    assert "skipped tests fail this run" not in result.stdout.str()


def test_run_by_hand_a_skip_is_allowed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BEREIK_NO_SKIPS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_skipping=SKIPPING)
    assert pytester.runpytest(plugins=[no_skips]).ret == pytest.ExitCode.OK
