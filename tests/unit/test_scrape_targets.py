"""Each process announces its /metrics in a file of its own; Prometheus and the System page see only live ones."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.scrape_targets import (
    prune_stale_targets,
    register_scrape_target,
    running_targets,
    scrape_host,
    targets_dir,
)
from infra.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture()
def local(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(settings, state_dir=tmp_path, metrics_enabled=True)


def test_a_registered_process_is_listed_with_its_unit_name_and_address(local: Settings) -> None:
    path = register_scrape_target(local, "scoring", "scoring-1", 6066)
    assert path is not None and path.parent == targets_dir(local)
    document = json.loads(path.read_text())
    assert document[0]["targets"] == ["127.0.0.1:6066"]
    assert document[0]["labels"]["job"] == "scoring" and document[0]["labels"]["instance"] == "scoring-1"
    assert document[0]["labels"]["deployment"] == local.deployment
    [target] = running_targets(local)
    assert (target.job, target.instance, target.url, target.pid) == ("scoring", "scoring-1", "http://127.0.0.1:6066",
                                                                      os.getpid())


def test_the_file_of_a_process_that_died_is_neither_listed_nor_kept(local: Settings) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    folder = targets_dir(local)
    folder.mkdir(parents=True)
    stale = folder / "builder-builder-1.json"
    stale.write_text(json.dumps([{"targets": ["127.0.0.1:6067"],
                                  "labels": {"deployment": local.deployment, "job": "builder",
                                             "instance": "builder-1",
                                             "__wastex_pid": dead.stdout.strip()}}]))
    live = register_scrape_target(local, "ingest", "ingest", 8081)
    assert [target.job for target in running_targets(local)] == ["ingest"]
    assert prune_stale_targets(local) == [stale]
    assert sorted(folder.iterdir()) == [live]


def test_a_deployment_lists_only_its_own_processes(local: Settings) -> None:
    other = dataclasses.replace(local, postgres_db="t0123456789")
    register_scrape_target(local, "scoring", "scoring-1", 6066)
    register_scrape_target(other, "scoring", "scoring-1", 7066)
    assert [target.address for target in running_targets(local)] == ["127.0.0.1:6066"]
    assert [(target.deployment, target.address) for target in running_targets(other)] == [("t0123456789",
                                                                                            "127.0.0.1:7066")]


def test_a_process_removes_its_file_when_it_exits(local: Settings) -> None:
    script = ("import sys; from infra.scrape_targets import register_scrape_target; "
              "from infra.settings import load_settings; "
              "print(register_scrape_target(load_settings(), 'trainer', 'trainer', 6068))")
    env = {**os.environ, "WASTEX_HOME": str(local.state_dir), "WASTEX_METRICS": "true"}
    written = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert written.stdout.strip().endswith(".json")
    assert not Path(written.stdout.strip()).exists()


def test_with_metrics_off_nothing_is_registered(local: Settings) -> None:
    assert register_scrape_target(dataclasses.replace(local, metrics_enabled=False), "scoring", "s-1", 6066) is None
    assert running_targets(local) == []


@pytest.mark.parametrize(("listening", "scraped"), [
    ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("", "127.0.0.1"),
    ("10.1.2.3", "10.1.2.3"), ("::1", "[::1]"), ("ui.example", "ui.example"),
])
def test_prometheus_reaches_a_server_listening_on_every_address_through_loopback(listening: str,
                                                                                scraped: str) -> None:
    assert scrape_host(listening) == scraped
