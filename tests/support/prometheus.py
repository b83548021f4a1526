"""A real Prometheus with the repository's rules, scraping one exchange."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bench.exchange import REPO, free_port


class Prometheus:
    """A real Prometheus with the repository's rules, scraping one exchange every second."""

    def __init__(self, workdir: Path, target_port: int) -> None:
        self.port = free_port()
        self.workdir = workdir / "prometheus"
        self.workdir.mkdir()
        rules = REPO / "deploy" / "prometheus" / "rules"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in sorted(rules.glob("*.yml"))],
            "scrape_configs": [
                {
                    "job_name": "bereik",
                    "scrape_interval": "1s",
                    "scrape_timeout": "900ms",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{target_port}"], "labels": {"service": "bereik"}}
                    ],
                }
            ],
        }
        # JSON is YAML: no YAML writer needed.
        (self.workdir / "prometheus.yml").write_text(json.dumps(config, indent=1))
        self.log = self.workdir / "prometheus.log"
        self.process = subprocess.Popen(
            [
                "/usr/bin/prometheus",
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"prometheus not ready:\n{self.log.read_text()[-2000:]}")

    def query(self, expr: str) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr}: more than one series: {result}"
        value = result[0]["value"]
        assert isinstance(value, list)
        return float(value[1])

    async def until(self, expr: str, expected: float, timeout: float = 20) -> None:
        """Wait until `expr` (one series) has the expected value in Prometheus."""
        deadline = time.monotonic() + timeout
        seen: float | None = None
        while time.monotonic() < deadline:
            seen = self.value(expr)
            if seen is not None and abs(seen - expected) < 1e-9:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{expr} = {seen}, expected {expected}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
