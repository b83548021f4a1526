"""The test command's order: the workers' shares of the last run's seconds come out even,
and a test the last run did not have is scheduled among the first."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.durations import TABLE_ROW, dealt


@dataclass
class Item:
    nodeid: str


SECONDS = {"a": 90.0, "b": 80.0, "c": 50.0, "d": 40.0, "e": 30.0, "f": 10.0, "g": 5.0}


def shares(order: list[Item], workers: int) -> list[list[str]]:
    """The blocks xdist's worksteal hands out: contiguous, equal count, the smaller first."""
    blocks, at = [], 0
    for n in range(workers):
        size = (len(order) - at) // (workers - n)
        blocks.append([i.nodeid for i in order[at : at + size]])
        at += size
    return blocks


def test_workers_get_shares_of_nearly_equal_seconds_each_longest_first() -> None:
    items = [Item(name) for name in "gfedcba"] + [Item("h")]  # h: not in the last run
    for workers in (2, 3):
        order = dealt(items, SECONDS, workers)
        assert sorted(i.nodeid for i in order) == sorted("abcdefgh")
        blocks = shares(order, workers)
        totals = [sum(SECONDS.get(t, 60.0) for t in block) for block in blocks]
        # The whole is 365 s: the shares differ by less than the shortest long test.
        assert max(totals) - min(totals) <= 40.0, (workers, blocks, totals)
        for block in blocks:
            costs = [SECONDS.get(t, 60.0) for t in block]
            assert costs == sorted(costs, reverse=True)


def test_without_workers_the_order_is_longest_first_and_a_new_test_early() -> None:
    order = [i.nodeid for i in dealt([Item(n) for n in ["g", "new", "a", "c"]], SECONDS, 0)]
    assert order == ["a", "new", "c", "g"]


def test_the_table_row_of_docs_durations_is_read() -> None:
    row = "| `tests/e2e/test_x.py::test_y[sqlite]` | parallel | 48.6 | 0.0 | 48.6 | 0.0 | gw0 |  |"
    found = TABLE_ROW.search(row)
    assert found and found["test"] == "tests/e2e/test_x.py::test_y[sqlite]"
    assert float(found["seconds"]) == 48.6
