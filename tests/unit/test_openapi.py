"""The OpenAPI document: well-formed, and every path of our web plugins it names exists."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bereik.serve import web_app
from cti.calls.live import LiveCalls
from cti.services import build_services
from cti.web.openapi import DOCUMENT
from dialplan.config import Config


def test_document_is_openapi_3_with_a_summary_and_responses_for_each_operation() -> None:
    assert DOCUMENT["openapi"].startswith("3.")
    for path, operations in DOCUMENT["paths"].items():
        assert path.startswith("/")
        for method, operation in operations.items():
            assert method in ("get", "post", "put", "patch", "delete"), path
            assert operation["summary"] and operation["responses"], (method, path)
            for ref in _refs(operation):
                name = ref.rsplit("/", 1)[1]
                section = ref.split("/")[2]
                assert name in DOCUMENT["components"][section], ref


def test_documented_paths_are_mounted(tmp_path: Path) -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    services = build_services(Config(), async_sessionmaker(engine), home=tmp_path)
    app = web_app(services, LiveCalls())
    mounted = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or ""
        for route in resource:
            mounted.add((route.method.lower(), path.replace("{id:\\d+}", "{id}")))
    documented = {(m, p) for p, ops in DOCUMENT["paths"].items() for m in ops}
    # Kept in sync both ways: every JSON endpoint documented, every documented one there.
    api = {(m, p) for m, p in mounted if p.startswith("/api/") and m != "head"}
    assert api - documented == set(), "mounted but not in the OpenAPI document"
    assert documented - mounted == set(), "documented but not mounted"


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []
