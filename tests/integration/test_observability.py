"""Every process of a running deployment exports metrics that Prometheus scrapes, that add up to what was sent,
and that every dashboard panel and alert rule can read."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from infra.services.prometheus import ALERT_RULES
from infra.settings import PROJECT_ROOT, Settings
from review_ui.system_status import in_deployment
from tests.observed_system import SENT, ObservedSystem, samples, start_observed_system

DASHBOARD = PROJECT_ROOT / "infra" / "grafana" / "wastex-dashboard.json"
SCRAPED_WITHIN_S = 60


@pytest.fixture(scope="module")
def system(deployment: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedSystem]:
    started = start_observed_system(deployment, tmp_path_factory.mktemp("observed"))
    yield started
    started.stop()


def _prometheus(settings: Settings, path: str, **params: str) -> dict:
    body = requests.get(f"{settings.prometheus_url}{path}", params=params, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]


def _wait_scraped(system: ObservedSystem) -> dict[tuple[str, str], dict]:
    wanted = {(process.job, process.instance, f"127.0.0.1:{process.port}") for process in system.processes.values()}
    deadline = time.monotonic() + SCRAPED_WITHIN_S
    while True:
        active = _prometheus(system.settings, "/api/v1/targets", state="active")["activeTargets"]
        found = {(t["labels"]["job"], t["labels"]["instance"], t["scrapeUrl"].split("/")[2]): t for t in active
                 if t["labels"].get("deployment") == system.settings.deployment}
        if all(key in found and found[key]["health"] == "up" for key in wanted) or time.monotonic() > deadline:
            return {key: found.get(key, {}) for key in wanted}
        time.sleep(1)


def test_the_scoring_counters_add_up_to_the_images_sent_by_outcome(system: ObservedSystem) -> None:
    scored = system.scored_by_outcome()
    assert scored == {"classified": SENT["classified"] + 1, "ood": SENT["ood"], "dead_letter": SENT["dead_letter"]}
    text = system.processes["scoring"].metrics_text()
    dead = [labels for labels, value in samples(text, "wastex_scoring_images_total")
            if labels["outcome"] == "dead_letter" and value]
    assert [labels["reason"] for labels in dead] == ["not_an_image"]
    assert {labels["model_version"] for labels, value in samples(text, "wastex_scoring_images_total")
            if labels["outcome"] != "dead_letter" and value} == {"observed-1"}
    [(_, batched)] = samples(text, "wastex_scoring_batch_size_sum")
    assert batched == sum(scored.values()) - SENT["dead_letter"]  # a record that is no image never reaches a batch


def test_prometheus_scrapes_every_process_the_test_started(system: ObservedSystem) -> None:
    targets = _wait_scraped(system)
    assert {key: target.get("health") for key, target in targets.items()} == {key: "up" for key in targets}


def test_every_dashboard_panel_query_returns_data(system: ObservedSystem) -> None:
    _wait_scraped(system)
    time.sleep(3 * system.settings.prometheus_scrape_s)  # rates need two samples after the images were scored
    empty = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            query = in_deployment(target["expr"], system.settings)  # Grafana's $deployment: the test's own
            if not _prometheus(system.settings, "/api/v1/query", query=query)["result"]:
                empty.append(f"{panel['title']}: {target['expr']}")
    assert empty == []


def test_the_alert_rules_pass_promtool_and_the_local_prometheus_evaluates_them(system: ObservedSystem) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool comes with Debian's prometheus package (wastex infra up installs it)"
    checked = subprocess.run([promtool, "check", "rules", str(ALERT_RULES)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    groups = _prometheus(system.settings, "/api/v1/rules", type="alert")["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {"ConsumerLagGrowing", "OodRateHigh", "NoModelServing", "LabelOutboxStale",
                          "TrainerRunFailed"}
    assert all(rule["health"] == "ok" for rule in rules.values()), rules
