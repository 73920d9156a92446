"""`wastex worker scoring|builder` as a sub-process logging to a file, for benchmarks, tests and the demo."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from infra.deployment import environment
from infra.settings import Settings

WASTEX = str(Path(sys.executable).with_name("wastex"))


class WorkerProcess:
    """`wastex worker <kind>` as a subprocess, logging to a file."""

    def __init__(self, isolated: Settings, name: str, web_port: int, log_dir: Path, kind: str = "scoring",
                 **env: str) -> None:
        self.name, self.web_port, self.kind = name, web_port, kind
        self.log_path = log_dir / f"{name}.log"
        self._env = environment(isolated, WASTEX_HOME=str(isolated.state_dir), **env)
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([WASTEX, "worker", self.kind, "--name", self.name, "--web-port",
                                         str(self.web_port), "--loglevel", "info"],
                                        env=self._env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        return self

    def wait_healthy(self, timeout_s: float = 120, ready: Callable[[dict], bool] = bool) -> dict:
        """The worker's /health/ document once `ready` accepts it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            try:
                health = requests.get(f"http://127.0.0.1:{self.web_port}/health/", timeout=1).json()
                if ready(health):
                    return health
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.name} not ready after {timeout_s} s\n{self.log_tail()}")

    def wait_serving(self, timeout_s: float = 120) -> dict:
        """A scoring worker's health once it serves a model."""
        return self.wait_healthy(timeout_s, lambda health: bool(health["model_version"]))

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(60)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
