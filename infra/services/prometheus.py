"""Prometheus from Debian's package, with its own data directory, port and configuration.

It scrapes itself and every process that registered a target file (infra/scrape_targets.py), and evaluates
the alert rules in infra/prometheus/alerts.yml. The configuration is written on every `up`: a running server
is told to reload it, so a changed setting (scrape interval, rules) takes effect without a restart.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from infra.scrape_targets import prune_stale_targets, targets_dir
from infra.services.base import LaunchSpec, Service
from infra.services.debian_packages import apt_install

PACKAGE = "prometheus"
ALERT_RULES = Path(__file__).resolve().parent.parent / "prometheus" / "alerts.yml"


def scrape_configuration(scrape_s: float, self_address: str, targets: Path, rules: Path) -> dict:
    """The configuration of a Prometheus that scrapes the processes registered under `targets`."""
    interval = f"{scrape_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [self_address]}]},
            # The target files set `job` (the unit) and `instance` (the process's name) themselves.
            {"job_name": "wastex", "file_sd_configs": [{"files": [str(targets / "*.json")],
                                                        "refresh_interval": interval}]},
        ],
    }


class PrometheusService(Service):
    name = "prometheus"

    @property
    def host(self) -> str:
        return self.settings.prometheus_host

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.prometheus_port,)

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    def install(self) -> None:
        if shutil.which("prometheus") is None:
            apt_install(self, PACKAGE)

    def write_config(self) -> bool:
        """Write the configuration and drop targets of processes that are gone; True if the file changed."""
        targets = targets_dir(self.settings)
        targets.mkdir(parents=True, exist_ok=True)
        prune_stale_targets(self.settings)
        text = yaml.safe_dump(scrape_configuration(self.settings.prometheus_scrape_s, self.address, targets,
                                                   ALERT_RULES), sort_keys=False)
        if self.config_file.exists() and self.config_file.read_text() == text:
            return False
        self.config_file.write_text(text)
        return True

    def up(self) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        changed = self.write_config()
        outcome = super().up()
        if outcome == "already running" and changed:
            self._reload()
            return "already running, configuration reloaded"
        return outcome

    def _reload(self) -> None:
        request = urllib.request.Request(f"http://{self.address}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise self.fail(f"reloading the configuration answered {response.status}")

    def launch_spec(self) -> LaunchSpec:
        s = self.settings
        return LaunchSpec(
            command=[shutil.which("prometheus") or "prometheus", f"--config.file={self.config_file}",
                     f"--storage.tsdb.path={self.home / 'data'}",
                     f"--storage.tsdb.retention.time={s.prometheus_retention}",
                     f"--web.listen-address={self.address}",
                     "--web.enable-lifecycle"],  # POST /-/reload after the configuration changed
            cwd=self.home,
        )

    def is_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False
