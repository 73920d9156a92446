"""`wastex infra up|down|status|reset|smoke`: the local Kafka, MinIO, PostgreSQL and Prometheus."""

from __future__ import annotations

import shutil
import sys

import click
from rich.console import Console
from rich.table import Table

from infra.services import ServiceError, all_services
from infra.settings import load_settings

console = Console(soft_wrap=True)


@click.group()
def infra() -> None:
    """Local infrastructure: real Kafka (KRaft), MinIO, PostgreSQL and Prometheus as processes."""


def start_all() -> None:
    """Start every service (idempotent), then create topics, buckets and the schema."""
    from infra.provision import provision, provisioned_summary

    settings = load_settings()
    for service in all_services(settings):
        with console.status(f"{service.name}: starting on {service.address} ..."):
            outcome = service.up()
        console.print(f"[green]✓[/] {service.name:<10} {service.address:<22} {outcome}")
    with console.status("provisioning topics, buckets and the database schema ..."):
        created = provision(settings)
    console.print(f"[green]✓[/] provisioned: {provisioned_summary(created)}")


@infra.command()
def up() -> None:
    """Start (or keep) Kafka, MinIO, PostgreSQL and Prometheus and wait until they are healthy."""
    try:
        start_all()
    except ServiceError as error:
        console.print(f"[red]✗ {error}[/]", highlight=False)
        sys.exit(1)


@infra.command()
def down() -> None:
    """Stop every service; no process is left behind."""
    for service in reversed(all_services(load_settings())):
        stopped = service.down()
        console.print(f"{service.name:<10} {'stopped' if stopped else 'was not running'}")


@infra.command()
def status() -> None:
    """Show each service, its address and its health. Exits 1 unless all are healthy."""
    settings = load_settings()
    table = Table("service", "address", "pid", "state", "memory (RSS)")
    statuses = [service.status() for service in all_services(settings)]
    for s in statuses:
        colour = {"healthy": "green", "unhealthy": "yellow", "stopped": "red"}[s.state]
        memory = f"{s.rss_bytes / 2**20:.0f} MiB" if s.pid else "-"
        table.add_row(s.name, s.address, str(s.pid or "-"), f"[{colour}]{s.state}[/]", memory)
    console.print(table)
    console.print(f"logs: {settings.state_dir / 'logs'}/<service>.log")
    sys.exit(0 if all(s.healthy for s in statuses) else 1)


@infra.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset(yes: bool) -> None:
    """Stop everything and wipe all state (data, logs, generated credentials); keeps built binaries."""
    settings = load_settings()
    if not yes and not click.confirm(f"Wipe all WasteX state under {settings.state_dir}?"):
        console.print("nothing wiped")
        return
    for service in reversed(all_services(settings)):
        service.down()
    kept = {"bin"}
    for entry in settings.state_dir.iterdir():
        if entry.name in kept:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    console.print(f"wiped {settings.state_dir} (kept {', '.join(sorted(kept))}/)")


@infra.command(name="provision")
def provision_command() -> None:
    """Create topics, buckets and the database schema on already running services (e.g. docker compose)."""
    from infra.provision import provision, provisioned_summary

    created = provision(load_settings())
    console.print(f"provisioned: {provisioned_summary(created)}")


@infra.command()
def smoke() -> None:
    """Round trip through Kafka, MinIO and PostgreSQL."""
    from infra.smoke import run_smoke

    result = run_smoke(load_settings())
    for name, outcome in (("kafka", result.kafka), ("minio", result.minio), ("postgres", result.postgres)):
        console.print(f"[green]✓[/] {name:<10} {outcome}")
