"""What the System page shows: every process that serves metrics, each stream worker's `/health/` and figures,
and the last hour's charts from Prometheus. Without Prometheus the page still lists the workers' health.

The charts' queries are panels of the Grafana dashboard too (infra/grafana/wastex-dashboard.json; a test keeps
the two in step), so the page and the dashboard show the same figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

from infra.scrape_targets import ScrapeTarget, running_targets
from infra.settings import Settings
from review_ui.prometheus_api import PrometheusApi, PrometheusUnreachable, Series

HOUR_S = 3600.0
STEP_S = 30.0  # 120 points per chart
HEALTH_TIMEOUT_S = 1.0
STREAM_WORKERS = ("scoring", "builder")  # the units with a Faust `/health/`
IMAGES = "wastex_scoring_images_total"
LATENCY = "wastex_scoring_capture_to_routed_seconds_bucket"
DEPLOYMENT_VARIABLE = "$deployment"
SCOPE = f'deployment="{DEPLOYMENT_VARIABLE}"'  # in every selector: deployments sharing a Prometheus stay apart


@dataclass(frozen=True)
class Line:
    expr: str
    name: str = ""  # the line's name; "" names each series by the value of `by`
    by: str = ""


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    unit: str
    lines: tuple[Line, ...]
    floor: float  # the least top of the y axis: small values stay small on the chart


SYSTEM_CHARTS = (
    Chart("throughput", "Images per second by outcome", "images/s",
          (Line(f"sum by (outcome) (rate({IMAGES}{{{SCOPE}}}[1m]))", by="outcome"),), 1.0),
    Chart("ood_rate", "OOD rate", "share of scored images",
          (Line(f'sum(rate({IMAGES}{{{SCOPE}, outcome="ood"}}[5m])) / '
                f'sum(rate({IMAGES}{{{SCOPE}, outcome=~"classified|ood"}}[5m]))', name="ood"),), 0.1),
    Chart("latency", "Capture to routed", "seconds",
          (Line(f"histogram_quantile(0.5, sum by (le) (rate({LATENCY}{{{SCOPE}}}[5m])))", name="p50"),
           Line(f"histogram_quantile(0.99, sum by (le) (rate({LATENCY}{{{SCOPE}}}[5m])))", name="p99")), 1.0),
    Chart("lag", "Consumer lag", "images waiting",
          (Line(f"sum by (instance) (wastex_scoring_consumer_lag{{{SCOPE}}})", by="instance"),), 10.0),
)
WORKER_FIGURES = {  # per instance, now
    "images_per_s": f"sum by (instance) (rate({IMAGES}{{{SCOPE}}}[1m]))",
    "lag": f"sum by (instance) (wastex_scoring_consumer_lag{{{SCOPE}}})",
}
SCRAPES = f"up{{{SCOPE}}}"


def in_deployment(expr: str, settings: Settings) -> str:
    """`expr` (written with the dashboard's `$deployment` variable) for this deployment's series only."""
    quoted = settings.deployment.replace("\\", "\\\\").replace('"', '\\"')  # inside a PromQL string
    return expr.replace(DEPLOYMENT_VARIABLE, quoted)


def _health(target: ScrapeTarget, http: requests.Session) -> dict[str, Any]:
    try:
        response = http.get(f"{target.url}/health/", timeout=HEALTH_TIMEOUT_S)
        return response.json()
    except (requests.RequestException, ValueError) as error:
        return {"status": "unreachable", "error": f"{type(error).__name__}: /health/ did not answer"}


def _chart_document(chart: Chart, settings: Settings, prometheus: PrometheusApi, start: float,
                    end: float) -> dict[str, Any]:
    series = []
    for line in chart.lines:
        for found in prometheus.query_range(in_deployment(line.expr, settings), start, end, STEP_S):
            series.append({"name": line.name or found.labels.get(line.by, "?"),
                           "points": [[t, v] for t, v in found.points if v == v]})  # NaN: nothing to divide
    return {"key": chart.key, "title": chart.title, "unit": chart.unit, "series": series}


def _by_instance(series: list[Series]) -> dict[str, float]:
    return {found.labels.get("instance", ""): found.points[-1][1] for found in series if found.points}


def _scrape_states(series: list[Series]) -> dict[tuple[str, str], str]:
    """(job, instance) -> up or down; a process up under any of its scrapes counts up."""
    states: dict[tuple[str, str], str] = {}
    for found in series:
        key = (found.labels.get("job", ""), found.labels.get("instance", ""))
        if states.get(key) != "up":
            states[key] = "up" if found.points[-1][1] == 1.0 else "down"
    return states


def system_report(settings: Settings, http: requests.Session | None = None) -> dict[str, Any]:
    """The System page's document: processes, stream workers with health and figures, charts (or why none)."""
    http = http or requests.Session()
    prometheus = PrometheusApi(settings.prometheus_url, http)
    targets = running_targets(settings)
    end = time.time()
    figures: dict[str, dict[str, float]] = {}
    scrapes: dict[tuple[str, str], str] = {}
    charts: list[dict[str, Any]] = []
    error = None
    try:
        figures = {key: _by_instance(prometheus.query(in_deployment(expr, settings)))
                   for key, expr in WORKER_FIGURES.items()}
        scrapes = _scrape_states(prometheus.query(in_deployment(SCRAPES, settings)))
        charts = [_chart_document(chart, settings, prometheus, end - HOUR_S, end) for chart in SYSTEM_CHARTS]
    except PrometheusUnreachable as problem:
        error = str(problem)
    workers = []
    for target in targets:
        if target.job not in STREAM_WORKERS:
            continue
        health = _health(target, http)
        workers.append({"unit": target.job, "instance": target.instance, "address": target.address,
                        "status": health.get("status"), "health": health,
                        "model_version": health.get("model_version"), "runtime": health.get("runtime"),
                        "images_per_s": figures.get("images_per_s", {}).get(target.instance),
                        "lag": figures.get("lag", {}).get(target.instance)})
    processes = [{"unit": target.job, "instance": target.instance, "address": target.address,
                  "scraped": scrapes.get((target.job, target.instance), "not scraped yet")}
                 for target in targets]
    return {"deployment": settings.deployment, "prometheus": {"url": settings.prometheus_url, "error": error},
            "metrics_enabled": settings.metrics_enabled, "as_of": end, "window_s": HOUR_S, "step_s": STEP_S,
            "processes": processes, "workers": workers, "charts": charts}
