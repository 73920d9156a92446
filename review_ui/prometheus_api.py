"""Prometheus' HTTP API, as the System page reads it: instant and range queries, with a short timeout."""

from __future__ import annotations

from dataclasses import dataclass

import requests

TIMEOUT_S = 3.0  # the page waits this long at most per query: a stopped Prometheus must not stall it


class PrometheusUnreachable(RuntimeError):
    """Prometheus did not answer, or refused the query; the message says which."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value); one point for an instant query


class PrometheusApi:
    def __init__(self, url: str, http: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = http or requests.Session()

    def _get(self, path: str, params: dict[str, str | float]) -> list[dict]:
        try:
            response = self._http.get(f"{self.url}{path}", params=params, timeout=TIMEOUT_S)
        except requests.RequestException as error:
            raise PrometheusUnreachable(f"Prometheus at {self.url} is not reachable "
                                        f"({type(error).__name__})") from error
        try:
            body = response.json()
        except ValueError:
            raise PrometheusUnreachable(f"Prometheus at {self.url} answered HTTP {response.status_code} without "
                                        "JSON") from None
        if body.get("status") != "success":
            raise PrometheusUnreachable(f"Prometheus refused the query {params.get('query')!r}: "
                                        f"{body.get('error', response.status_code)}")
        return body["data"]["result"]

    def query(self, expr: str) -> list[Series]:
        """The expression's value now, per series."""
        return [Series(entry["metric"], [(float(entry["value"][0]), float(entry["value"][1]))])
                for entry in self._get("/api/v1/query", {"query": expr})]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        """The expression every `step_s` from `start` to `end` (unix times), per series."""
        return [Series(entry["metric"], [(float(t), float(v)) for t, v in entry["values"]])
                for entry in self._get("/api/v1/query_range",
                                       {"query": expr, "start": start, "end": end, "step": step_s})]
