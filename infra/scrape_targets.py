"""Where Prometheus finds the processes of the deployments on this machine: one file_sd target file per process.

Each long-running process writes its own file once its `/metrics` serves and removes it at exit, so the
local Prometheus (which watches `<state dir>/prometheus/targets/*.json`) scrapes exactly the processes that
run, whoever started them: `wastex demo`, a test, or an operator. A file whose process died (killed, so no
exit hook ran) names its pid; `prune_stale_targets` removes it, and `running_targets` never returns it.
Every target carries its deployment's name as the `deployment` label, so deployments that share the state
directory and Prometheus (tests and benchmarks beside a site) stay apart on the System page and the dashboard.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from infra.settings import Settings

PID_LABEL = "__wastex_pid"  # a meta label: Prometheus reads it for relabelling and then drops it
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})


@dataclass(frozen=True)
class ScrapeTarget:
    deployment: str  # Settings.deployment of the process
    job: str  # the unit: scoring, builder, trainer, review_ui, ingest
    instance: str  # the process's name within its unit (scoring-1, ...)
    address: str  # host:port of its HTTP server
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def targets_dir(settings: Settings) -> Path:
    return settings.state_dir / "prometheus" / "targets"


def scrape_host(listen_host: str) -> str:
    """Where the local Prometheus reaches a server listening on `listen_host`: loopback for every address."""
    if listen_host in WILDCARD_HOSTS:
        return "127.0.0.1"
    return f"[{listen_host}]" if ":" in listen_host else listen_host


def register_scrape_target(settings: Settings, job: str, instance: str, port: int,
                           host: str = "127.0.0.1") -> Path | None:
    """Announce this process's `/metrics` (served on `host`, the address it listens on) to the local Prometheus
    until it exits; nothing when metrics are off."""
    if not settings.metrics_enabled:
        return None
    folder = targets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    path = folder / f"{settings.deployment}-{job}-{instance}-{pid}.json"
    labels = {"deployment": settings.deployment, "job": job, "instance": instance, PID_LABEL: str(pid)}
    document = [{"targets": [f"{scrape_host(host)}:{port}"], "labels": labels}]
    # Written aside and renamed: Prometheus watches the folder and must never read half a file.
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document))
    partial.replace(path)
    atexit.register(path.unlink, missing_ok=True)
    return path


def _read(path: Path) -> ScrapeTarget | None:
    try:
        entry = json.loads(path.read_text())[0]
        labels = entry["labels"]
        return ScrapeTarget(labels["deployment"], labels["job"], labels["instance"], entry["targets"][0],
                            int(labels[PID_LABEL]))
    except (OSError, ValueError, LookupError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's process: it exists
        return True
    return True


def running_targets(settings: Settings) -> list[ScrapeTarget]:
    """The registered processes of this deployment that still run, by job and instance."""
    found = (_read(path) for path in targets_dir(settings).glob("*.json"))
    return sorted((target for target in found if target is not None and _alive(target.pid)
                   and target.deployment == settings.deployment), key=lambda target: (target.job, target.instance))


def prune_stale_targets(settings: Settings) -> list[Path]:
    """Remove the files of processes that are gone (or unreadable); returns what was removed."""
    removed = []
    for path in targets_dir(settings).glob("*.json"):
        target = _read(path)
        if target is None or not _alive(target.pid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path)
    return removed
