"""The profile table: each py-spy sample counted for the innermost part of ours it is in."""

from __future__ import annotations

from bench.profile import LOOP, parts

REPO_ROOT = "/srv/checkout/"

LIB = "/usr/lib/python3/dist-packages"


def test_samples_count_for_the_innermost_part_they_are_in() -> None:
    handler = f"ivr ({REPO_ROOT}agi/handlers/ivr.py:40)"
    server = f"_serve ({REPO_ROOT}agi/server.py:200)"
    query = f"execute ({LIB}/sqlalchemy/engine/base.py:1400)"
    select = "select (/usr/lib/python3.11/selectors.py:468)"
    text = "\n".join(
        [
            f"process 1;thread 2;{server};{handler};{query} 3",
            f"process 1;thread 2;{server};{handler} 2",
            f"process 1;thread 2;{server} 1",
            f"process 1;thread 2;main ({REPO_ROOT}bereik/cli.py:40);{select} 4",
        ]
    )
    counted = parts(text)
    assert counted["database"] == 3
    assert counted["handler logic"] == 2
    assert counted["FastAGI protocol"] == 1
    assert counted[LOOP] == 4
