"""`wastex worker ...` and `wastex counts`."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from infra.settings import load_settings

console = Console(soft_wrap=True)


@click.group()
def worker() -> None:
    """Faust stream workers."""


@worker.command()
@click.option("--name", default="scoring-1", show_default=True, help="Worker name (its own data directory).")
@click.option("--web-port", type=int, help="Port of the worker's web server (default WASTEX_SCORING_WEB_PORT).")
@click.option("--loglevel", default="info", type=click.Choice(["crit", "error", "warn", "info", "debug"]))
def scoring(name: str, web_port: int | None, loglevel: str) -> None:
    """Score captured images: classified, OOD or dead letter; counts per class and camera.

    Start several with different --name and --web-port: they share the partitions.
    """
    from stream_apps.scoring.app import create_app
    from stream_apps.stream_app import WorkerWithStopDeadline

    settings = load_settings()
    app = create_app(settings, worker_name=name, web_port=web_port)
    WorkerWithStopDeadline(app, loglevel=loglevel, stop_timeout_s=settings.worker_stop_timeout_s
                           ).execute_from_commandline()


@worker.command()
@click.option("--name", default="builder-1", show_default=True, help="Worker name (its own data directory).")
@click.option("--web-port", type=int, help="Port of the worker's web server (default WASTEX_BUILDER_WEB_PORT).")
@click.option("--loglevel", default="info", type=click.Choice(["crit", "error", "warn", "info", "debug"]))
def builder(name: str, web_port: int | None, loglevel: str) -> None:
    """Build dataset versions: the label log staged per image, a delta version per CreateVersionRequested."""
    from stream_apps.builder.app import create_app
    from stream_apps.stream_app import WorkerWithStopDeadline

    settings = load_settings()
    app = create_app(settings, worker_name=name, web_port=web_port)
    WorkerWithStopDeadline(app, loglevel=loglevel, stop_timeout_s=settings.worker_stop_timeout_s
                           ).execute_from_commandline()


@click.command()
def counts() -> None:
    """Print the current totals per class and per camera (counts.totals), and next to each camera and site the
    audited accuracy that qualifies them (counts.accuracy)."""
    from stream_apps.counts_reader import read_audited_accuracy, read_totals

    settings = load_settings()
    latest, audited = read_totals(settings), read_audited_accuracy(settings)
    table = Table("class", "count", title="images per class")
    for name, value in sorted(latest["class"].items()):
        table.add_row(name, str(value))
    table.add_row("[bold]total[/]", f"[bold]{sum(latest['class'].values())}[/]")
    console.print(table)
    table = Table("camera", "count", *AUDIT_COLUMNS, title="images per camera")
    for name, value in sorted(latest["camera"].items()):
        table.add_row(name, str(value), *_audit_cells(audited["camera"].get(name)))
    table.add_row("[bold]total[/]", f"[bold]{sum(latest['camera'].values())}[/]")
    console.print(table)
    if audited["site"]:
        table = Table("site", "scored", *AUDIT_COLUMNS, title="audited accuracy per site")
        for name, payload in sorted(audited["site"].items()):
            table.add_row(name, str(payload["scored"]), *_audit_cells(payload))
        console.print(table)


AUDIT_COLUMNS = ("model", "audited", "accuracy (95% CI)", "OOD rate", "silent miscounts")


def _audit_cells(payload: dict | None) -> tuple[str, ...]:
    if payload is None:
        return ("-",) * len(AUDIT_COLUMNS)

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    interval = payload["interval"]
    accuracy = share(payload["accuracy"]) + ("" if interval is None else
                                              f" ({interval[0]:.1%}-{interval[1]:.1%})")
    return (payload["model_version"], str(payload["audited"]), accuracy, share(payload["ood_rate"]),
            share(payload["silent_miscount_rate"]))
