"""What every web handler reads from its application: the process's services."""

from __future__ import annotations

from aiohttp import web

from cti.services import Services

SERVICES = web.AppKey("services", Services)
