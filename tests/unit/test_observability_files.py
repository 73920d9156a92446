"""The Prometheus configuration, the alert rules, the Grafana dashboard and the System page agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from infra.services.prometheus import ALERT_RULES, scrape_configuration
from infra.settings import PROJECT_ROOT
from review_ui.system_status import SYSTEM_CHARTS

pytestmark = pytest.mark.unit
INFRA = PROJECT_ROOT / "infra"
DASHBOARD = INFRA / "grafana" / "wastex-dashboard.json"


def _panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def test_prometheus_reads_every_target_file_and_the_alert_rules() -> None:
    config = scrape_configuration(5, "127.0.0.1:9090", Path("/state/prometheus/targets"), ALERT_RULES)
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == [str(ALERT_RULES)]
    [wastex] = [job for job in config["scrape_configs"] if job["job_name"] == "wastex"]
    assert wastex["file_sd_configs"][0]["files"] == ["/state/prometheus/targets/*.json"]


def test_the_compose_prometheus_has_the_local_configuration_with_its_own_paths() -> None:
    compose = yaml.safe_load((INFRA / "prometheus" / "prometheus-compose.yml").read_text())
    assert compose == scrape_configuration(5, "127.0.0.1:9090", Path("/wastex/targets"),
                                           Path("/etc/prometheus/alerts.yml"))


def test_the_alert_rules_cover_lag_ood_rate_model_outbox_and_trainer() -> None:
    rules = yaml.safe_load(ALERT_RULES.read_text())["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == ["ConsumerLagGrowing", "OodRateHigh", "NoModelServing",
                                                 "LabelOutboxStale", "TrainerRunFailed"]
    assert next(rule for rule in rules if rule["alert"] == "ConsumerLagGrowing")["for"] == "5m"


def test_every_system_page_chart_is_a_dashboard_panel() -> None:
    dashboard_queries = {target["expr"] for panel in _panels() for target in panel["targets"]}
    for chart in SYSTEM_CHARTS:
        assert {line.expr for line in chart.lines} <= dashboard_queries, chart.title


def test_every_panel_reads_only_the_deployment_chosen_in_the_dashboard() -> None:
    variables = {variable["name"] for variable in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    assert variables == {"deployment"}
    for panel in _panels():
        for target in panel["targets"]:
            names = re.findall(r"\b(?:wastex_[a-z_]+|up)\b", target["expr"])
            scoped = re.findall(r'\b(?:wastex_[a-z_]+|up)\{deployment="\$deployment"[,}]', target["expr"])
            assert names and len(scoped) == len(names), target["expr"]


def test_every_alert_fires_per_deployment() -> None:
    for rule in yaml.safe_load(ALERT_RULES.read_text())["groups"][0]["rules"]:
        aggregations = re.findall(r"\b(?:sum|max|min|avg|count)\b\s*(by\s*\([^)]*\))?", rule["expr"])
        assert aggregations and all("deployment" in by for by in aggregations), rule["alert"]


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    provisioned = yaml.safe_load((INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    panels = _panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert {target["datasource"]["uid"] for target in panel["targets"]} == {uid}, panel["title"]
