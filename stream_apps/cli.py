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
    """Print the current totals per class and per camera (from the compacted counts topic)."""
    from stream_apps.counts_reader import read_totals

    latest = read_totals(load_settings())
    for scope in ("class", "camera"):
        table = Table(scope, "count", title=f"images per {scope}")
        for name, value in sorted(latest[scope].items()):
            table.add_row(name, str(value))
        table.add_row("[bold]total[/]", f"[bold]{sum(latest[scope].values())}[/]")
        console.print(table)
