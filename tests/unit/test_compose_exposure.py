"""The compose file publishes nothing beyond the machine: every port is bound to 127.0.0.1, and the services on
the host's network listen there too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

COMPOSE = Path(__file__).resolve().parents[2] / "infra" / "docker-compose.yml"


def _services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_published_port_is_bound_to_the_loopback_address() -> None:
    published = {name: service["ports"] for name, service in _services().items() if "ports" in service}
    assert set(published) >= {"kafka", "minio", "postgres"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_services_on_the_host_network_listen_on_the_loopback_address_only() -> None:
    on_host = {name: service for name, service in _services().items() if service.get("network_mode") == "host"}
    assert set(on_host) == {"prometheus", "grafana"}
    assert "--web.listen-address=127.0.0.1:${WASTEX_PROMETHEUS_PORT:-9090}" in on_host["prometheus"]["command"]
    assert on_host["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
