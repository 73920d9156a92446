"""The HTTP ingest's Prometheus metrics: requests by status code, body bytes and latency, served at /metrics."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from infra.settings import Settings, load_settings
from producers.camera_tokens import CameraIdentity, TokenRejected
from producers.capture import CapturedImage, captured_event
from producers.http_ingest import create_ingest_app
from producers.ingest_metrics import IngestMetrics
from schemas.events import Event

pytestmark = pytest.mark.unit

TOKEN = "good-token"


class KnownToken:
    def authenticate(self, token: str) -> CameraIdentity:
        if token != TOKEN:
            raise TokenRejected("unknown token")
        return CameraIdentity("cam-1", "site-1", "good")


class KeptSink:
    """Keeps the events instead of storing and announcing them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def store(self, image: CapturedImage) -> Event:
        return captured_event(image, "images")

    def publish(self, event: Event) -> None:
        self.events.append(event)

    def flush(self) -> None:
        pass


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 160, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture()
def ingest_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.setenv("WASTEX_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("WASTEX_METRICS", raising=False)
    return load_settings()


def _client(settings: Settings) -> FlaskClient:
    return create_ingest_app(settings, KeptSink(), KnownToken()).test_client()  # type: ignore[arg-type]


def _samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def test_ingest_counts_requests_by_code_and_their_body_bytes(ingest_settings: Settings) -> None:
    client = _client(ingest_settings)
    image = _jpeg()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    assert client.post("/images", data=image, headers=headers).status_code == 201
    assert client.post("/images", data=image, headers=headers).status_code == 201
    assert client.post("/images", data=b"junk", headers={"Content-Type": "image/jpeg"}).status_code == 401
    assert client.post("/images", data=b"not an image", headers=headers).status_code == 415
    assert client.get("/nowhere").status_code == 404

    samples = _samples(client)
    by_code = {dict(labels)["code"]: value for (name, labels), value in samples.items()
               if name == "wastex_ingest_requests_total"}
    assert by_code == {"201": 2.0, "401": 1.0, "415": 1.0, "404": 1.0}
    assert samples[("wastex_ingest_received_bytes_total", ())] == 2 * len(image) + len(b"junk") + len(b"not an image")
    assert samples[("wastex_ingest_request_seconds_count", ())] == 5.0
    assert samples[("wastex_ingest_request_seconds_sum", ())] > 0


def test_monitoring_requests_are_not_counted_as_camera_traffic(ingest_settings: Settings) -> None:
    client = _client(ingest_settings)
    assert client.get("/health").status_code == 200
    _samples(client)
    samples = _samples(client)
    assert not [name for name, _ in samples if name == "wastex_ingest_requests_total"]
    assert samples[("wastex_ingest_request_seconds_count", ())] == 0.0


def test_with_metrics_off_the_ingest_has_no_metrics_route(ingest_settings: Settings,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASTEX_METRICS", "off")
    client = _client(load_settings())
    assert client.get("/metrics").status_code == 404
    assert client.get("/health").status_code == 200


def test_a_recorded_request_lands_in_its_latency_bucket() -> None:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    metrics.record(503, 1000, 0.3)
    assert registry.get_sample_value("wastex_ingest_requests_total", {"code": "503"}) == 1
    assert registry.get_sample_value("wastex_ingest_received_bytes_total") == 1000
    assert registry.get_sample_value("wastex_ingest_request_seconds_bucket", {"le": "0.25"}) == 0
    assert registry.get_sample_value("wastex_ingest_request_seconds_bucket", {"le": "0.5"}) == 1

