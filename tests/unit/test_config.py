"""The configuration file: every kind of mistake gives one clear line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from bereik.cli import main
from dialplan.config import ConfigError, load
from tests.support.config_files import BASE, problem, write

REPO = Path(__file__).resolve().parents[2]


def test_the_example_configuration_is_valid() -> None:
    config = load(REPO / "bereik.example.toml")
    assert config.exchange.main_number == "14070"
    assert {team.id for team in config.teams} >= {"vergunningen", "stadsbeheer", "parkeren"}


def test_unknown_key_is_named(tmp_path: Path) -> None:
    message = problem(tmp_path, BASE + "\n[server]\nhttp_prot = 8080\n")
    assert message.endswith("server.http_prot: unknown key")


def test_unknown_key_inside_a_team(tmp_path: Path) -> None:
    message = problem(tmp_path, BASE.replace('name = "Vergunningen"', 'name = "V"\ncolour = "red"'))
    assert message.endswith("teams.0.colour: unknown key")


def test_missing_field_is_named(tmp_path: Path) -> None:
    message = problem(tmp_path, BASE.replace('mailbox = "vergunningen@example.org"', ""))
    assert message.endswith("teams.0.mailbox: missing field")


def test_duplicate_number_names_both_owners(tmp_path: Path) -> None:
    message = problem(tmp_path, BASE + '\n[kcc]\nnumber = "7001"\n')
    assert "number 7001 is used by both" in message
    assert "kcc.number" in message and "team vergunningen" in message


def test_duplicate_team_id(tmp_path: Path) -> None:
    second = BASE.split("[[teams]]")[1].replace('"7001"', '"7002"')
    message = problem(tmp_path, BASE + "[[teams]]" + second)
    assert "team id vergunningen appears twice" in message


def test_member_must_be_a_phone(tmp_path: Path) -> None:
    message = problem(tmp_path, BASE.replace('members = ["3001"]', 'members = ["3999"]'))
    assert "member 3999 is not in [[phones]]" in message


def test_menu_must_name_a_known_team(tmp_path: Path) -> None:
    message = problem(
        tmp_path, BASE + '\n[[menu.options]]\nkey = "1"\nlabel = "x"\nteam = "parkeren"\n'
    )
    assert "unknown team parkeren" in message


def test_menu_option_needs_exactly_one_destination(tmp_path: Path) -> None:
    message = problem(tmp_path, BASE + '\n[[menu.options]]\nkey = "1"\nlabel = "x"\n')
    assert "exactly one of team, kcc, info or submenu" in message


def test_bad_value_type_and_range(tmp_path: Path) -> None:
    assert "server.http_port" in problem(tmp_path, BASE + "\n[server]\nhttp_port = 70000\n")
    assert "teams.0.number" in problem(tmp_path, BASE.replace('"7001"', '"70x1"'))


def test_bad_opening_hours(tmp_path: Path) -> None:
    assert "hours.mon" in problem(tmp_path, BASE + '\n[hours]\nmon = "17:00-08:30"\n')
    assert "hours.tue" in problem(tmp_path, BASE + '\n[hours]\ntue = "8-5"\n')


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid TOML" in problem(tmp_path, "[server\n")
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "absent.toml")


def test_key_given_twice_is_refused(tmp_path: Path) -> None:
    twice = BASE + "\n[server]\nhttp_port = 1\nhttp_port = 2\n"
    assert "not valid TOML" in problem(tmp_path, twice)


def test_cli_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BASE + "\n[server]\nhttp_prot = 8080\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"bereik: {path}: server.http_prot: unknown key"


def test_bad_queue_settings_on_a_team_give_a_clear_error(tmp_path: Path) -> None:
    queue = BASE.replace('members = ["3001"]', 'members = ["3001"]\nmode = "queue"')
    assert "teams.0.mode" in problem(tmp_path, BASE.replace('members = ["3001"]', 'mode = "line"'))
    message = problem(tmp_path, BASE.replace('members = ["3001"]', "max_wait_seconds = 60"))
    assert message.endswith('team vergunningen: max_wait_seconds needs mode = "queue"')
    message = problem(tmp_path, queue.replace('members = ["3001"]', "members = []"))
    assert message.endswith('team vergunningen: mode = "queue" needs members to answer')
    message = problem(
        tmp_path, queue.replace('mode = "queue"', 'mode = "queue"\nmax_wait_seconds = 5')
    )
    assert "teams.0.max_wait_seconds" in message and "greater than or equal to 10" in message
    message = problem(tmp_path, queue.replace('id = "vergunningen"', 'id = "kcc"'))
    assert message.endswith("team id kcc is the KCC's own line; choose another id")


def test_a_team_with_mode_queue_is_a_waiting_line_with_its_own_limits(tmp_path: Path) -> None:
    queue = BASE.replace(
        'members = ["3001"]', 'members = ["3001"]\nmode = "queue"\nmax_wait_seconds = 60'
    )
    config = load(write(tmp_path, queue + "\n[queue]\nmax_waiting = 4\n"))
    (line,) = config.waiting_lines()
    assert (line.name, line.number, line.members) == ("vergunningen", "7001", ("3001",))
    assert (line.max_wait_seconds, line.max_waiting, line.team) == (60, 4, True)
