"""No broad `except` without a policy behind it (issue 27: a worker that only logs a fault
runs on silently broken at night, with nobody watching the log).

Every `except Exception`, `except BaseException`, bare `except:` and
`contextlib.suppress(Exception)` in the process's code is listed here with what stands
behind it: the supervisor (cti/supervisor.py: restarted with backoff, bereik_worker_up,
bereik_worker_restarts_total), the store's policy (cti/store/faults.py: waited out while
the store is down, else set aside with bereik_set_aside_total and BereikWorkSetAside),
a counter with an alert, a re-raise, or why it is no worker's path. A new one fails here
until it is given one of those and listed; a listed one that is gone fails too, so the
list stays the truth.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agi", "bereik", "cti", "metrics")
BROAD = {"Exception", "BaseException"}

SUPERVISOR = "the supervisor"
STORE = "the store's policy"

# (file, function, kind) -> what stands behind it.
SITES: dict[tuple[str, str, str], str] = {
    # The policies themselves.
    ("cti/supervisor.py", "Supervisor._keep", "except Exception"): (
        "is the supervisor: logs, shows the part down, restarts it with backoff"
    ),
    ("cti/store/faults.py", "until_stored", "except Exception"): (
        f"is {STORE}: waits while store_down(), raises anything else"
    ),
    ("cti/store/faults.py", "store_or_set_aside", "except Exception"): (
        f"is {STORE}: the item is set aside with its error, counted and alerted"
    ),
    ("cti/store/faults.py", "replay", "except Exception"): (
        f"is {STORE}: a replay refused again stays aside with the new error"
    ),
    ("cti/store/writer.py", "Writer._commit", "except Exception"): (
        "hands each job's error to the one caller waiting for it (its own policy decides), "
        "after running a failed shared batch's jobs one by one"
    ),
    # Workers.
    ("cti/calls/listener.py", "CallListener._write_batch", "except BaseException"): (
        "re-raises (to the supervisor) after putting the batch back"
    ),
    ("cti/calls/listener.py", "CallListener._apply_until_stored", "except Exception"): (
        f"{STORE}: the batch is written one by one, a refused effect set aside"
    ),
    ("cti/callbacks/scheduler.py", "check", "except Exception"): (
        f"{STORE}: a hopper whose reminders cannot be worked out is set aside, once"
    ),
    ("cti/retention.py", "run_once", "except Exception"): (
        "re-raises (to the supervisor) after giving today's claim back"
    ),
    ("cti/store/cache.py", "Notifications.run", "except Exception"): (
        f"{STORE} (down: reconnect, caches bypassed), anything else re-raised to {SUPERVISOR}"
    ),
    ("cti/store/cache.py", "Notifications.run", "suppress"): (
        "closing a LISTEN connection that is being given up; the loop goes on"
    ),
    ("cti/ami/client.py", "run_connect_duties", "except Exception"): (
        f"{STORE} for each connect duty, then the first failure to {SUPERVISOR}"
    ),
    ("cti/ami/client.py", "_Protocol.data_received", "except Exception"): (
        "counted and skipped: bereik_ami_event_failures_total{subscriber='AMI reader'}, "
        "BereikAmiEventFailures (raising would close the connection and lose every event)"
    ),
    ("cti/ami/client.py", "AmiClient._disconnect", "suppress"): (
        "closing a connection that is being given up; the reconnect loop goes on"
    ),
    ("cti/ami/bus.py", "EventBus._hand_out", "except Exception"): (
        "counted and skipped for that subscriber: bereik_ami_event_failures_total, "
        f"BereikAmiEventFailures; what subscribers write goes through {STORE}"
    ),
    ("cti/ami/bus.py", "EventBus._finish", "except Exception"): (
        "the same for a subscriber that awaits (the rest of `_hand_out`'s round)"
    ),
    ("cti/calls/lease.py", "TrackingLease._logged", "except Exception"): (
        f"{STORE} (a push waits out a store that is down); another fault is raised by the "
        f"lease's `run` to {SUPERVISOR}, whose restart pushes again"
    ),
    # Not a worker's path.
    ("agi/server.py", "FastAgiServer._serve", "except Exception"): (
        "one call's handler: the dialplan's fallback takes the call, "
        "bereik_agi_failures_total and BereikAgiFailures"
    ),
    ("agi/server.py", "FastAgiServer._accept", "suppress"): (
        "waiting for a FastAGI connection that is closed anyway to finish closing"
    ),
    ("cti/users/second_factor.py", "SecretBox.open", "except Exception"): (
        "re-raised as SecondFactorError: a web request's answer, not a worker"
    ),
}


def _kind(handler: ast.ExceptHandler) -> str | None:
    if handler.type is None:
        return "bare except"
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    for name in names:
        if isinstance(name, ast.Name) and name.id in BROAD:
            return f"except {name.id}"
    return None


def _suppresses_all(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name == "suppress" and any(
        isinstance(arg, ast.Name) and arg.id in BROAD for arg in call.args
    )


def broad_sites() -> Counter[tuple[str, str, str]]:
    """Every broad except and suppress in the packages, by file, function and kind."""
    found: Counter[tuple[str, str, str]] = Counter()

    def walk(node: ast.AST, path: str, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = [*scope, child.name]
            kind = None
            if isinstance(child, ast.ExceptHandler):
                kind = _kind(child)
            elif isinstance(child, ast.Call) and _suppresses_all(child):
                kind = "suppress"
            if kind is not None:
                found[(path, ".".join(scope), kind)] += 1
            walk(child, path, inner)

    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            walk(ast.parse(file.read_text()), file.relative_to(ROOT).as_posix(), [])
    return found


def test_every_broad_except_has_a_policy_behind_it_and_the_list_is_current() -> None:
    found = broad_sites()
    unlisted = sorted(site for site in found if site not in SITES)
    assert not unlisted, (
        "a broad except with no policy named: let it reach the supervisor, or hand the "
        "item to the store's policy (cti/store/faults.py), or count it with an alert; "
        f"then list it in {Path(__file__).name} with the reason: {unlisted}"
    )
    gone = sorted(site for site in SITES if site not in found)
    assert not gone, f"listed but no longer in the code (remove them): {gone}"
    twice = sorted(site for site, count in found.items() if count > 1)
    assert not twice, f"one function, two broad excepts: name each, or merge them: {twice}"


def test_the_check_finds_each_kind_of_broad_except() -> None:
    source = (
        "import contextlib\n"
        "def a():\n    try: pass\n    except Exception: pass\n"
        "class B:\n    async def c(self):\n        try: pass\n        except: pass\n"
        "        with contextlib.suppress(Exception): pass\n"
        "def d():\n    try: pass\n    except (ValueError, BaseException): pass\n"
        "def e():\n    try: pass\n    except ValueError: pass\n"
    )
    tree = ast.parse(source)
    kinds = sorted(
        kind
        for node in ast.walk(tree)
        for kind in [
            _kind(node)
            if isinstance(node, ast.ExceptHandler)
            else ("suppress" if isinstance(node, ast.Call) and _suppresses_all(node) else None)
        ]
        if kind is not None
    )
    assert kinds == ["bare except", "except BaseException", "except Exception", "suppress"]
