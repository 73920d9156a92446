"""What the review UI's integration and browser tests share: flagged images on the real stores, a live server."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from flask import Flask
from minio import Minio
from PIL import Image
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.test import TestResponse

from infra.clients import db_sessions, minio_client
from infra.db.dataset_versions import Change, VersionStore
from infra.db.models import ModelVersion
from infra.publisher import EventPublisher
from infra.settings import Settings
from review_ui.app import create_app
from review_ui.operators import create_operator
from review_ui.services import UiServices
from schemas.codec import new_event
from schemas.events import Event, EventType, format_timestamp

CLASSES = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
MODEL_VERSION = "m-test-1"
MODEL_DIGEST = "c0ffee" * 10 + "c0de"
PASSWORD = "correct horse battery"


def photo(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    """A distinct JPEG per seed (images are content-addressed, so equal bytes would be one image)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 215, size=3)
    pixels = np.clip(base + rng.integers(-25, 26, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@dataclass
class FlaggedImages:
    """ImageFlaggedOOD events whose images are really in the images bucket; `cleanup` removes the objects."""

    settings: Settings
    storage: Minio = field(init=False)
    keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.storage = minio_client(self.settings)

    def event(self, seed: int, *, camera: str = "cam-1", predicted: int | None = None, energy: float | None = None,
              captured_at: datetime | None = None) -> Event:
        data = photo(seed)
        sha256 = hashlib.sha256(data).hexdigest()
        key = f"images/{sha256}.jpg"
        self.storage.put_object(self.settings.bucket_images, key, io.BytesIO(data), len(data),
                                content_type="image/jpeg")
        self.keys.append(key)
        rng = np.random.default_rng(seed)
        logits = rng.normal(0.0, 0.4, len(CLASSES))
        if predicted is not None:
            logits[predicted] += 1.0
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        top = int(np.argmax(probabilities))
        computed_energy = float(-(logits.max() + np.log(np.exp(logits - logits.max()).sum())))
        moment = captured_at or datetime.now(UTC) - timedelta(minutes=seed % 50)
        return new_event(EventType.IMAGE_FLAGGED_OOD, {
            "image": {"bucket": self.settings.bucket_images, "object_key": key, "sha256": sha256},
            "camera_id": camera,
            "site_id": "site-t",
            "captured_at": format_timestamp(moment),
            "logits": [float(v) for v in logits],
            "probabilities": [float(p) for p in probabilities],
            "classes": CLASSES,
            "predicted_class": CLASSES[top],
            "confidence": float(probabilities[top]),
            "energy": computed_energy if energy is None else energy,
            "thresholds": {"tau_energy": -4.338604, "tau_softmax": 0.7},
            "reason": "both",
            "model_version": MODEL_VERSION,
            "model_digest": MODEL_DIGEST,
            "captured_event_id": str(uuid.uuid4()),
        }, "scoring")

    def publish(self, events: list[Event]) -> None:
        publisher = EventPublisher(self.settings)
        for event in events:
            publisher.publish(event)
        publisher.flush()

    def cleanup(self) -> None:
        for key in set(self.keys):
            self.storage.remove_object(self.settings.bucket_images, key)


def add_operator(settings: Settings, username: str, password: str = PASSWORD, *, role: str = "admin") -> str:
    """An account for a test; admin unless asked, so tests of other features may use every route."""
    with db_sessions(settings)() as session, session.begin():
        return create_operator(session, username, password, role=role, by="test").username


def registered_model(settings: Settings, version: str) -> str:
    """A registry row that can be promoted (no worker of a test deployment loads it)."""
    with db_sessions(settings).begin() as session:
        session.add(ModelVersion(version=version, artefact_uri=f"s3://{settings.bucket_models}/{version}",
                                 classes=CLASSES[:2], tau_energy=-5.0, tau_softmax=0.7, metrics={},
                                 artefact_digest=hashlib.sha256(version.encode()).hexdigest()))
    return version


def dataset_version(settings: Settings, name: str) -> str:
    """A one-image dataset version (not active) made straight in the store."""
    sha256 = hashlib.sha256(name.encode()).hexdigest()
    VersionStore(db_sessions(settings)).create(name, None, [Change(sha256, CLASSES[0], f"images/{sha256}.jpg")],
                                               created_by="test")
    return name


def wait_until(condition: Callable[[], object], timeout_s: float = 30.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class LiveServer:
    """The review UI on a free local port, in a thread, with its background services."""

    def __init__(self, settings: Settings, *, projection: bool = True) -> None:
        self.services = UiServices.create(settings, projection=projection).start()
        self.app = create_app(self.services)
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self.services.stop()


class SignedIn:
    """A Flask test client signed in as an operator, sending the CSRF token with every POST."""

    def __init__(self, app: Flask, username: str, password: str = PASSWORD) -> None:
        self.client = app.test_client()
        token = self.client.get("/api/csrf").json["csrf_token"]
        answer = self.client.post("/api/login", json={"username": username, "password": password},
                                  headers={"X-CSRF-Token": token})
        assert answer.status_code == 200, answer.json
        self.token = answer.json["csrf_token"]

    def get(self, url: str, **kwargs: Any) -> TestResponse:
        return self.client.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> TestResponse:
        headers = {"X-CSRF-Token": self.token, **kwargs.pop("headers", {})}
        return self.client.post(url, headers=headers, **kwargs)

    def act(self, url: str, **body: Any) -> dict[str, Any]:
        """POST an action with a fresh action id; the JSON answer (asserting 200)."""
        answer = self.post(url, json={"action_id": str(uuid.uuid4()), **body})
        assert answer.status_code == 200, answer.json
        return answer.json
