"""The System page's document: workers' health always, figures and charts when Prometheus answers."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.scrape_targets import register_scrape_target
from infra.settings import Settings
from review_ui.system_status import SYSTEM_CHARTS, in_deployment, system_report

pytestmark = pytest.mark.unit
HEALTH = {"worker": "scoring-1", "model_version": "run-v2-1", "runtime": "openvino-f32", "status": "ok"}


class Answer:
    def __init__(self, body: dict[str, Any], status_code: int = 200) -> None:
        self.body, self.status_code = body, status_code

    def json(self) -> dict[str, Any]:
        return self.body


def _vector(*rows: tuple[dict[str, str], float]) -> Answer:
    return Answer({"status": "success", "data": {"result": [{"metric": labels, "value": [1000.0, str(value)]}
                                                            for labels, value in rows]}})


def _matrix(*rows: tuple[dict[str, str], list[float]]) -> Answer:
    return Answer({"status": "success", "data": {"result": [
        {"metric": labels, "values": [[1000.0 + 30 * i, str(v)] for i, v in enumerate(values)]}
        for labels, values in rows]}})


class Network:
    """Answers like a worker's /health/ and like Prometheus; `prometheus_up` False refuses its connections."""

    def __init__(self, prometheus_up: bool) -> None:
        self.prometheus_up = prometheus_up
        self.queries: list[str] = []

    def get(self, url: str, params: dict[str, Any] | None = None, timeout: float = 0) -> Answer:
        if url.endswith("/health/"):
            return Answer(HEALTH)
        if not self.prometheus_up:
            raise requests.ConnectionError("connection refused")
        query = params["query"] if params else ""
        self.queries.append(query)
        if url.endswith("/api/v1/query_range"):
            if "by (outcome)" in query:
                return _matrix(({"outcome": "classified"}, [2.0, 3.0]), ({"outcome": "ood"}, [0.5, float("nan")]))
            return _matrix(({}, [0.2, 0.3]))
        if query.startswith("up"):
            return _vector(({"instance": "scoring-1", "job": "scoring"}, 1.0))
        return _vector(({"instance": "scoring-1"}, 4.5 if "rate" in query else 12.0))


@pytest.fixture()
def local(settings: Settings, tmp_path: Path) -> Settings:
    local = dataclasses.replace(settings, state_dir=tmp_path, metrics_enabled=True, prometheus_port=1)
    register_scrape_target(local, "scoring", "scoring-1", 6066)
    register_scrape_target(local, "trainer", "trainer", 6068)
    return local


def test_workers_carry_their_health_and_prometheus_figures_and_every_chart_has_lines(local: Settings) -> None:
    report = system_report(local, Network(prometheus_up=True))  # type: ignore[arg-type]
    assert report["prometheus"]["error"] is None
    [worker] = report["workers"]
    assert (worker["instance"], worker["model_version"], worker["runtime"], worker["status"]) == \
        ("scoring-1", "run-v2-1", "openvino-f32", "ok")
    assert (worker["images_per_s"], worker["lag"]) == (4.5, 12.0)
    assert {process["instance"]: process["scraped"] for process in report["processes"]} == \
        {"scoring-1": "up", "trainer": "not scraped yet"}
    charts = {chart["key"]: chart for chart in report["charts"]}
    assert list(charts) == [chart.key for chart in SYSTEM_CHARTS]
    throughput = {line["name"]: line["points"] for line in charts["throughput"]["series"]}
    assert throughput == {"classified": [[1000.0, 2.0], [1030.0, 3.0]], "ood": [[1000.0, 0.5]]}  # NaN dropped
    assert [line["name"] for line in charts["latency"]["series"]] == ["p50", "p99"]


def test_without_prometheus_the_page_says_so_and_still_shows_each_workers_health(local: Settings) -> None:
    report = system_report(local, Network(prometheus_up=False))  # type: ignore[arg-type]
    assert "is not reachable" in report["prometheus"]["error"]
    assert report["charts"] == []
    [worker] = report["workers"]
    assert (worker["model_version"], worker["status"], worker["images_per_s"]) == ("run-v2-1", "ok", None)


def test_every_query_the_page_sends_reads_only_its_own_deployments_series(local: Settings) -> None:
    network = Network(prometheus_up=True)
    system_report(local, network)  # type: ignore[arg-type]
    assert len(network.queries) == sum(len(chart.lines) for chart in SYSTEM_CHARTS) + 3  # and 2 figures, scrapes
    for query in network.queries:
        selectors = re.findall(r"\b(?:wastex_[a-z_]+|up)\{([^}]*)\}", query)
        assert selectors and all(f'deployment="{local.deployment}"' in selector for selector in selectors), query


def test_a_deployment_name_with_quotes_stays_one_promql_string(settings: Settings) -> None:
    named = dataclasses.replace(settings, postgres_db='site "north" \\ 2')
    assert in_deployment('up{deployment="$deployment"}', named) == 'up{deployment="site \\"north\\" \\\\ 2"}'
