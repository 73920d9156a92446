"""`wastex model ...`: the model registry from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from infra.settings import load_settings

console = Console(soft_wrap=True)


@click.group()
def model() -> None:
    """Model registry: import a user's model, list versions, promote one to serve."""


@model.command(name="import")
@click.argument("keras_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--classes", "classes_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Text file with one class name per line, in the model's output order.")
@click.option("--version", help="Version name (default: derived from the file's content).")
@click.option("--tau-energy", type=float, help="OOD energy threshold (default: the seeds' -4.338604).")
@click.option("--tau-softmax", type=float, help="OOD max-softmax threshold (default: the seeds' 0.70).")
@click.option("--promote/--no-promote", default=None,
              help="Serve it now (default: only when no model serves yet).")
def import_command(keras_file: Path, classes_file: Path, version: str | None, tau_energy: float | None,
                   tau_softmax: float | None, promote: bool | None) -> None:
    """Register KERAS_FILE: export to LiteRT (checked against Keras), upload, record in the registry."""
    from infra.db.registry import production_model
    from training_job.model_registry import RegistryError, import_model, read_class_file
    from training_job.model_registry import promote as promote_version

    settings = load_settings()
    try:
        imported = import_model(settings, keras_file, read_class_file(classes_file), version=version,
                                tau_energy=tau_energy, tau_softmax=tau_softmax)
    except RegistryError as error:
        console.print(f"[red]✗ {error}[/]")
        sys.exit(1)
    state = "already registered" if imported.already_registered else "registered"
    console.print(f"{imported.version}: {state} at {imported.artefact_uri}; {imported.export.detail}")
    if promote or (promote is None and production_model(settings) is None):
        promote_version(settings, imported.version, promoted_by="cli-import")
        console.print(f"{imported.version}: promoted to production")


@model.command(name="list")
def list_command() -> None:
    """Every registered model version and which one serves."""
    from training_job.model_registry import list_models

    table = Table("version", "status", "classes", "tau_energy", "tau_softmax", "runtime", "created")
    for row in list_models(load_settings()):
        table.add_row(row.version, row.status, str(len(row.classes)), f"{row.tau_energy:.4f}",
                      f"{row.tau_softmax:.3f}", "litert" if row.has_serving_export else "keras",
                      row.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@model.command(name="promote")
@click.argument("version")
@click.option("--by", "promoted_by", default="operator", show_default=True, help="Who promotes.")
def promote_command(version: str, promoted_by: str) -> None:
    """Make VERSION the production model; every scoring worker is told through models.promoted."""
    from training_job.model_registry import RegistryError, promote

    try:
        promote(load_settings(), version, promoted_by)
    except RegistryError as error:
        console.print(f"[red]✗ {error}[/]")
        sys.exit(1)
    console.print(f"{version}: promoted to production")
