"""`wastex demo`: the whole loop on one machine, from cameras to a retrained model serving.

Brings the infrastructure up, registers the seed dataset version (the given folder, else a generated one),
starts the trainer (which trains the first model from that version and promotes it), the version builder,
scoring workers, the review UI, the HTTP ingest and two camera simulators: the seed's site, and a second site whose
camera sees the same kinds of waste on a textured floor under warm light (the scoring monitor reports it drifting);
prints the UI address, an operator login and a camera token for the ingest, and runs until interrupted, then stops
every process it started and the infrastructure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from infra.services.process import free_port
from infra.settings import Settings, load_settings

console = Console()
WASTEX = str(Path(sys.executable).with_name("wastex"))
OPERATOR = "demo"
SEED_VERSION = "v1"
SITE_CAMERAS = 12
PHONE_CAMERA, PHONE_SITE = "phone-1", "demo-site"  # the camera whose token the demo prints, for curl uploads
FLOOR_SITE, FLOOR_CAMERAS = "floor-site", "floor-cam"  # the second site: another look, so it drifts
SEED_IMAGES_PER_CLASS = 40
CAMERA_IMAGES_PER_CLASS = 60


class Child:
    """One `wastex ...` command run as a sub-process of the demo, logging to its own file."""

    def __init__(self, name: str, args: list[str], log_dir: Path, **env: str) -> None:
        self.name, self.log_path = name, log_dir / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([WASTEX, *args], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env={**os.environ, **env},
                                            start_new_session=True)  # Ctrl-C reaches the demo only

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _run(args: list[str], stdin: str | None = None) -> None:
    subprocess.run([WASTEX, *args], input=stdin, text=True, check=True)


def _datasets(settings: Settings, dataset: Path | None) -> tuple[Path, Path]:
    """(the seed version's folder, the folder the cameras show): a generated pair unless a dataset is given."""
    if dataset is not None:
        return dataset, dataset
    from producers.generated_dataset import SEED_CLASSES, UNSEEN_CLASSES, write_dataset

    root = settings.state_dir / "demo"
    with console.status("generating a dataset ..."):
        seed = write_dataset(root / "seed-dataset", SEED_IMAGES_PER_CLASS, SEED_CLASSES)
        cameras = write_dataset(root / "camera-images", CAMERA_IMAGES_PER_CLASS, {**SEED_CLASSES, **UNSEEN_CLASSES},
                                first_seed=100_000)
    console.print(f"[green]✓[/] generated dataset: {seed} ({len(SEED_CLASSES)} classes); the cameras also "
                  f"show {', '.join(UNSEEN_CLASSES)}, which the first model does not know")
    return seed, cameras


def _register_seed(settings: Settings, folder: Path) -> None:
    from infra.clients import db_sessions
    from infra.db.dataset_versions import VersionStore

    if VersionStore(db_sessions(settings)).versions():
        console.print("[green]✓[/] dataset versions exist already; the seed is not registered again")
        return
    _run(["dataset", "register", str(folder), "--name", SEED_VERSION, "--by", OPERATOR,
          "--notes", f"seed of the demo, from {folder}"])


def _operator_password(settings: Settings) -> str:
    """A new password for the demo's admin account, created on the first demo of this state directory."""
    from infra.clients import db_sessions
    from review_ui.operators import find_operator

    password = secrets.token_urlsafe(9)
    with db_sessions(settings)() as session:
        exists = find_operator(session, OPERATOR) is not None
    if exists:
        _run(["ui", "create-operator", OPERATOR, "--password-stdin", "--reset"], stdin=password + "\n")
        _run(["ui", "set-role", OPERATOR, "admin"])  # the demo promotes and activates
    else:
        _run(["ui", "create-operator", OPERATOR, "--role", "admin", "--password-stdin"], stdin=password + "\n")
    return password


def _camera_token(settings: Settings) -> str:
    """A fresh ingest token for the demo's phone camera; the previous demo's token is revoked (it was printed)."""
    from infra.clients import db_sessions
    from producers.camera_tokens import CameraTokenError, issue_token, revoke_tokens

    with db_sessions(settings)() as session, session.begin():
        with contextlib.suppress(CameraTokenError):  # the first demo on this state directory: nothing to revoke
            revoke_tokens(session, camera_id=PHONE_CAMERA)
        return issue_token(session, PHONE_CAMERA, PHONE_SITE, OPERATOR).token


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _watch(settings: Settings, children: list[Child]) -> None:
    """Report which model serves whenever it changes; return when a child died or on SIGINT/SIGTERM."""
    from infra.db.registry import production_model

    signal.signal(signal.SIGTERM, _interrupt)
    serving = None
    while True:
        for child in children:
            if child.process.poll() is not None:
                console.print(f"[red]✗ {child.name} stopped (exit {child.process.returncode}); see {child.log_path}[/]")
                return
        row = production_model(settings)
        if row is not None and row.version != serving:
            serving = row.version
            console.print(f"[green]✓[/] model {serving} serves ({len(row.classes)} classes: {', '.join(row.classes)})")
        time.sleep(5)


@click.command()
@click.option("--dataset", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder with one sub-folder per class (TrashNet, RealWaste). Default: a generated dataset.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="Scoring workers.")
@click.option("--rate", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Images per second from the camera simulator.")
@click.option("--training-minutes", default=5.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Wall-time budget of each training run.")
@click.option("--audit-rate", default=0.1, show_default=True, type=click.FloatRange(min=0, max=1),
              help="Share of in-distribution images queued for audit (WASTEX_AUDIT_RATE; higher than its 0.02 "
                   "default so that the Sites page has figures within minutes).")
def demo(dataset: Path | None, workers: int, rate: float, training_minutes: float, audit_rate: float) -> None:
    """Run the whole system on this machine until interrupted (Ctrl-C stops everything)."""
    from infra.cli import down, start_all

    os.environ["WASTEX_AUDIT_RATE"] = str(audit_rate)  # every child: the workers sample, retention keeps the samples
    settings = load_settings()
    start_all()
    seed_folder, camera_folder = _datasets(settings, dataset)
    _register_seed(settings, seed_folder)
    password = _operator_password(settings)
    camera_token = _camera_token(settings)
    log_dir = settings.state_dir / "demo" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    training = {"WASTEX_TRAINER_MINUTES": str(training_minutes)}
    if dataset is None:  # a few hundred generated images: fewer augmented passes are enough
        training["WASTEX_TRAINER_AUGMENTED_VIEWS"] = "2"
    children: list[Child] = []
    try:
        children.append(Child("trainer", ["trainer"], log_dir, **training))
        children.append(Child("builder", ["worker", "builder"], log_dir))
        ports = [settings.scoring_web_port] + [free_port() for _ in range(workers - 1)]
        children += [Child(f"scoring-{i}", ["worker", "scoring", "--name", f"scoring-{i}", "--web-port", str(port)],
                           log_dir) for i, port in enumerate(ports, start=1)]
        children.append(Child("ui", ["ui", "serve"], log_dir))
        children.append(Child("ingest", ["ingest", "serve"], log_dir))
        # Images are keyed by camera, so a worker scores only the cameras whose keys hash to its partitions:
        # a dozen cameras spread over both workers, three would leave one idle.
        children.append(Child("cameras", ["produce", "--source", str(camera_folder), "--cameras", str(SITE_CAMERAS),
                                          "--rate", str(rate), "--count", "1000000"], log_dir))
        children.append(Child("floor-camera", ["produce", "--source", str(camera_folder), "--cameras", "1",
                                               "--camera-prefix", FLOOR_CAMERAS, "--site", FLOOR_SITE,
                                               "--look", "floor", "--rate", str(rate / 3), "--count", "1000000"],
                              log_dir))
        console.rule("WasteX Stream demo")
        console.print(f"Review UI: [bold]http://{settings.ui_host}:{settings.ui_port}/[/]   "
                      f"login [bold]{OPERATOR}[/] / [bold]{password}[/]")
        console.print(f"The trainer trains the first model from version {SEED_VERSION} (up to "
                      f"{training_minutes:g} min); the workers start scoring once it is promoted. Label the "
                      "images in the queue, create a version on the Versions page, and the trainer retrains, "
                      "promotes and every worker serves the new model.")
        console.print(f"Post your own photos as camera {PHONE_CAMERA}: [bold]curl -H 'Authorization: Bearer "
                      f"{camera_token}' -F image=@photo.jpg http://{settings.ingest_host}:{settings.ingest_port}"
                      "/images[/]")
        console.print(f"Camera {FLOOR_CAMERAS}-1 of site {FLOOR_SITE} sees the same waste on a textured floor: the "
                      "Sites page shows its audited accuracy against the other cameras' and marks it drifting.")
        console.print(f"System page (health, throughput, lag, latency): [bold]http://{settings.ui_host}:{settings.ui_port}"
                      f"/system[/]   Prometheus: {settings.prometheus_url} (every process registers its /metrics)")
        console.print(f"Logs: {log_dir}   Ctrl-C stops everything.")
        _watch(settings, children)
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        for child in reversed(children):
            child.stop()
        down.callback()
