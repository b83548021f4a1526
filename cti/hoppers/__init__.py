"""Hoppers: callback requests for a team (service, web API, CLI)."""
