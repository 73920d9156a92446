"""(d) of the scoring benchmark: the serving path sites run today, rebuilt from the seeds' Flask app.

The seeds served `POST /predict` with an uploaded image: decode it, resize it to the model's input, run one
Keras `model.predict` on that one image and answer the class, its confidence and the OOD decision, in a single
synchronous worker. Here the same app serves the same model on one waitress thread (a synchronous worker) in its
own process, and 16 concurrent HTTP clients in the benchmark's process send it the same photos the stream scores.

Run as `python -m bench.per_request MODEL_FOLDER PORT` for the server side.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from infra.services.process import free_port

CLIENTS = 16


@dataclass(frozen=True)
class PerRequestFigures:
    per_request_ips: float
    p50_ms: float
    requests: int


def create_predict_app(folder: Path):
    """The seeds' app: one `model.predict` per request on the one uploaded image."""
    import io

    import keras
    from flask import Flask, jsonify, request
    from PIL import Image

    from schemas.model_artefact import KERAS_FILE, read_artefact_info
    from schemas.ood_scores import energy_score, is_ood

    model = keras.models.load_model(folder / KERAS_FILE, compile=False)
    size = int(model.input_shape[1])
    info = read_artefact_info(folder)
    thresholds = info.thresholds
    app = Flask("per_request")

    @app.post("/predict")
    def predict():
        image = Image.open(io.BytesIO(request.files["file"].read())).convert("RGB").resize((size, size))
        logits = model.predict(np.asarray(image, dtype=np.float32)[None], verbose=0)
        probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        top = int(np.argmax(logits[0]))
        return jsonify({"class": info.classes[top], "confidence": float(probabilities[0, top]),
                        "energy": float(energy_score(logits)[0]), "ood": bool(is_ood(logits, thresholds)[0])})

    return app


def measure_per_request(folder: Path, photos: list[bytes], log_dir: Path) -> PerRequestFigures:
    """Images per second and median latency of `photos`, each posted once, by CLIENTS concurrent clients."""
    port = free_port()
    log = (log_dir / "per-request.log").open("ab")
    server = subprocess.Popen([sys.executable, "-m", "bench.per_request", str(folder), str(port)],
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/predict"
    try:
        _wait_until_answering(server, url, photos[0])
        for photo in photos[:4]:  # warm-up: the first predict calls trace the model
            _post(requests.Session(), url, photo)
        sessions = [requests.Session() for _ in range(CLIENTS)]
        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            latencies = list(pool.map(lambda i: _post(sessions[i % CLIENTS], url, photos[i]), range(len(photos))))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(60)
    return PerRequestFigures(len(photos) / elapsed, float(np.percentile(latencies, 50)), len(photos))


def _post(session: requests.Session, url: str, photo: bytes) -> float:
    started = time.perf_counter()
    answer = session.post(url, files={"file": ("photo.jpg", photo, "image/jpeg")}, timeout=300)
    answer.raise_for_status()
    return 1000 * (time.perf_counter() - started)


def _wait_until_answering(server: subprocess.Popen, url: str, photo: bytes, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the per-request server exited with {server.returncode}")
        try:
            _post(requests.Session(), url, photo)
            return
        except requests.RequestException:
            time.sleep(0.5)
    raise RuntimeError(f"the per-request server did not answer within {timeout_s:.0f} s")


if __name__ == "__main__":
    from waitress import serve

    serve(create_predict_app(Path(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), threads=1)
