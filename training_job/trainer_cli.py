"""`wastex trainer`: the training service (see training_job.service)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import click

from infra.settings import load_settings


@click.command()
@click.option("--loglevel", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def trainer(loglevel: str) -> None:
    """Train a candidate for every new dataset version, compare it with production, promote by policy.

    Consumes DatasetVersionCreated one at a time; stop with Ctrl-C or SIGTERM (a run in progress is
    recorded as interrupted and runs again at the next start).
    """
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from training_job.service import TrainerService
    from training_job.trainer_metrics import serve_trainer_metrics

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    settings = load_settings()
    service = TrainerService(settings, stop, serve_trainer_metrics(settings))
    service.serve()
    if service.abandoned is not None and service.abandoned.is_alive():
        # The run's thread is inside TensorFlow and cannot be interrupted; its run is recorded already.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
