"""`wastex infra` as a user runs it, on its own state directory and ports beside the shared services."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.services.process import free_ports, is_alive, port_is_open

WASTEX = str(Path(sys.executable).with_name("wastex"))
PORT_SETTINGS = ("WASTEX_KAFKA_PORT", "WASTEX_KAFKA_CONTROLLER_PORT", "WASTEX_MINIO_PORT",
                 "WASTEX_MINIO_CONSOLE_PORT", "WASTEX_POSTGRES_PORT", "WASTEX_PROMETHEUS_PORT")
SERVICES = 4


@pytest.fixture()
def isolated_env() -> Iterator[dict[str, str]]:
    # Under /tmp rather than pytest's tmp_path: PostgreSQL's own account must be able to reach it.
    home = Path(tempfile.mkdtemp(prefix="wastex-home-"))
    home.chmod(0o755)
    env = {**os.environ, "WASTEX_HOME": str(home), "WASTEX_TOPIC_PREFIX": "isolated.",
           **{name: str(port) for name, port in zip(PORT_SETTINGS, free_ports(len(PORT_SETTINGS)), strict=True)}}
    yield env
    subprocess.run([WASTEX, "infra", "down"], env=env, capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)


def _wastex(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASTEX, *args], env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, check=False)


def _ports(env: dict[str, str]) -> list[int]:
    return [int(env[name]) for name in PORT_SETTINGS]


def test_up_names_a_taken_port_and_the_log(isolated_env: dict[str, str]) -> None:
    port = int(isolated_env["WASTEX_POSTGRES_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = _wastex(isolated_env, "infra", "up")
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken" in result.stdout
    assert "WASTEX_*_PORT" in result.stdout


def test_up_twice_status_down_reset(isolated_env: dict[str, str]) -> None:
    first = _wastex(isolated_env, "infra", "up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("started") == SERVICES
    assert all(port_is_open("127.0.0.1", port) for port in _ports(isolated_env))

    second = _wastex(isolated_env, "infra", "up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already running") == SERVICES
    assert "0 new topics, 0 new buckets, 0 topics reconfigured" in second.stdout

    # A changed setting reaches the running Prometheus without a restart.
    slower = _wastex({**isolated_env, "WASTEX_PROMETHEUS_SCRAPE_S": "7"}, "infra", "up")
    assert "already running, configuration reloaded" in slower.stdout, slower.stdout + slower.stderr
    served = requests.get(f"http://127.0.0.1:{isolated_env['WASTEX_PROMETHEUS_PORT']}/api/v1/status/config",
                          timeout=5).json()["data"]["yaml"]
    assert "scrape_interval: 7s" in served

    status = _wastex(isolated_env, "infra", "status")
    assert status.returncode == 0
    assert status.stdout.count("healthy") == SERVICES

    home = Path(isolated_env["WASTEX_HOME"])
    pids = [int(p.read_text()) for p in (home / "run").glob("*.pid")]
    assert len(pids) == SERVICES
    down = _wastex(isolated_env, "infra", "down")
    assert down.returncode == 0
    assert not any(port_is_open("127.0.0.1", port) for port in _ports(isolated_env))
    assert not any(is_alive(pid) for pid in pids)
    assert _wastex(isolated_env, "infra", "status").returncode == 1

    refused = _wastex(isolated_env, "infra", "reset")  # no terminal to confirm on: nothing is wiped
    assert refused.returncode != 0
    assert (home / "postgres" / "data").exists()
    assert _wastex(isolated_env, "infra", "reset", "--yes").returncode == 0
    assert sorted(p.name for p in home.iterdir()) == ["bin"]
