"""`wastex ingest serve` under a burst of decompression bombs: 60 cameras post at once a 150 KB PNG of 6300x6300
pixels (within the 40 MP limit; decoded, each would take 150 MB). The ingest, a separate process on its own port,
answers every one (accepted, 413 or 503 with Retry-After, never a reset connection or a 500) and its peak memory
stays under the stated bound."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image, ImageDraw

from infra.clients import db_sessions
from infra.deployment import environment
from infra.services.process import free_port
from infra.settings import Settings
from producers.camera_tokens import issue_token
from tests.review_ui_support import wait_until

WASTEX = str(Path(sys.executable).with_name("wastex"))
UPLOADS = 60
SIDE = 6300
# The ingest takes about 90 MiB at rest and 105 MiB once its clients are connected; checking a PNG takes about
# 1 MiB (its pixel data is inflated in slices, never held) and at most WASTEX_INGEST_THREADS bodies of 150 KB are
# in hand at once. Decoding each PNG, as the check did before, took 150 MiB: one at a time would already pass 250.
PEAK_RSS_BOUND_MIB = 160


def _bomb_png() -> bytes:
    """A mostly uniform 6300x6300 picture: about 130 KB as PNG, 119 MB as RGB pixels."""
    picture = Image.new("RGB", (SIDE, SIDE), (120, 130, 140))
    ImageDraw.Draw(picture).rectangle((100, 100, 400, 300), fill=(10, 200, 30))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


@pytest.fixture(scope="module")
def ingest(deployment: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The URL and process id of `wastex ingest serve` on the deployment, on a free port of its own."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("ingest") / "ingest.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([WASTEX, "ingest", "serve", "--port", str(port)], env=environment(deployment),
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert server.poll() is None, log_path.read_text()[-3000:]
        try:
            return requests.get(f"{url}/health", timeout=5).ok
        except requests.ConnectionError:
            return False

    try:
        wait_until(healthy, timeout_s=120, what="the ingest to serve /health")
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(30)


def test_sixty_concurrent_bomb_pngs_are_answered_and_memory_stays_bounded(
        ingest: tuple[str, int], deployment: Settings) -> None:
    url, pid = ingest
    with db_sessions(deployment)() as session, session.begin():
        token = issue_token(session, "cam-burst", "site-burst", "test").token
    data = _bomb_png()
    assert len(data) < 200_000
    start = threading.Barrier(UPLOADS)

    def upload(_: int) -> requests.Response:
        start.wait()
        return requests.post(f"{url}/images", data=data, timeout=300,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"})

    with ThreadPoolExecutor(UPLOADS) as pool:
        answers = list(pool.map(upload, range(UPLOADS)))  # a reset connection would raise here

    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {201, 413, 503}, statuses
    assert statuses.count(201) >= 1, [answer.text for answer in answers[:3]]
    assert all(answer.headers.get("Retry-After") for answer in answers if answer.status_code == 503)
    peak = _peak_rss_mib(pid)
    print(f"peak RSS {peak:.0f} MiB; answers {dict((s, statuses.count(s)) for s in set(statuses))}")
    assert peak < PEAK_RSS_BOUND_MIB
