"""`wastex dataset ...`: seed registration and the read side of dataset versions."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from infra.clients import db_sessions, minio_client
from infra.db import audit
from infra.db.dataset_versions import VersionError, VersionStore
from infra.publisher import EventPublisher
from infra.settings import load_settings
from schemas.codec import InvalidEvent, new_event
from schemas.events import EventType
from stream_apps.builder.announcer import VersionAnnouncer
from stream_apps.builder.registration import SeedRegistrar
from stream_apps.builder.seed_folder import SeedFolderError, read_mapping, seed_images

console = Console(soft_wrap=True)


def _store() -> VersionStore:
    return VersionStore(db_sessions(load_settings()))


@click.group()
def dataset() -> None:
    """Dataset versions: a seed from a folder, then deltas built from the label log."""


@dataset.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name of the seed version, e.g. v1.")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON object of folder name -> class name, e.g. {"trash": "Miscellaneous Trash"}.')
@click.option("--by", "created_by", default="cli", show_default=True, help="Who registers it.")
@click.option("--notes", default="", help="Free text kept with the version.")
def register(folder: Path, name: str, mapping: Path | None, created_by: str, notes: str) -> None:
    """Register FOLDER (class folders, or train/val/test folders of class folders) as a seed version."""
    settings = load_settings()
    store = VersionStore(db_sessions(settings))
    storage = minio_client(settings)
    try:
        images = seed_images(folder, read_mapping(mapping))
        result = SeedRegistrar(storage, settings.bucket_images, store).register(
            images, name, created_by=created_by, notes=notes or f"registered from {folder.name}")
    except (SeedFolderError, VersionError) as error:
        raise click.ClickException(str(error)) from None
    version = result.version
    if version.name != name:
        console.print(f"this folder's content is registered already as {version.name}; nothing new was made")
    if version.announced_at is None:
        VersionAnnouncer(settings, store, storage, EventPublisher(settings)).announce(version.name)
    if store.active() is None:
        store.activate(version.name, by=audit.cli_operator())
    for path, reason in result.refused:
        console.print(f"[yellow]refused {path}: {reason}[/]")
    for sha256 in result.conflicting:
        console.print(f"[yellow]left out {sha256[:12]}: the same image stands in two class folders[/]")
    _print_stats(store.get(version.name).stats, f"{version.name}: {result.uploaded} images uploaded, "
                                                 f"{result.already_stored} already stored")
    if result.refused:
        sys.exit(1)


def _print_stats(stats: dict, title: str) -> None:
    table = Table("class", "images", title=title)
    for name, count in sorted(stats["per_class"].items()):
        table.add_row(name, str(count))
    table.add_row("[bold]total[/]", f"[bold]{stats['total']}[/]")
    console.print(table)
    console.print("splits: " + ", ".join(f"{split} {count}" for split, count in stats["per_split"].items()))


@dataset.command()
def versions() -> None:
    """Every version with its parent, size, changes and whether it is active."""
    store = _store()
    table = Table("version", "parent", "images", "added", "relabelled", "removed", "new classes", "created",
                  "active")
    for version in store.versions():
        changes = version.changes
        table.add_row(version.name, store.parent_name(version) or "-", str(version.stats["total"]),
                      str(changes["added"]), str(changes["relabelled"]), str(changes["removed"]),
                      ", ".join(version.classes_introduced) or "-", f"{version.created_at:%Y-%m-%d %H:%M}",
                      "yes" if version.active else "")
    console.print(table)


@dataset.command()
@click.argument("name")
def show(name: str) -> None:
    """One version: lineage, statistics and manifest."""
    store = _store()
    try:
        version = store.get(name)
    except VersionError as error:
        raise click.ClickException(str(error)) from None
    console.print(f"{version.name} (id {version.id}), parent {store.parent_name(version) or 'none'}, "
                  f"created by {version.created_by} at {version.created_at:%Y-%m-%d %H:%M:%S}"
                  f"{', active' if version.active else ''}")
    if version.notes:
        console.print(f"notes: {version.notes}")
    console.print(f"manifest: {version.manifest_uri or 'not written yet'}"
                  f"{f' (sha256 {version.manifest_sha256})' if version.manifest_sha256 else ''}")
    console.print(f"resolved from {store.chain_length(name)} version(s)")
    _print_stats(version.stats, f"{version.name}: {version.changes}")


@dataset.command()
@click.argument("older")
@click.argument("newer")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def diff(older: str, newer: str, as_json: bool) -> None:
    """Images added, removed and relabelled from OLDER to NEWER."""
    try:
        result = _store().diff(older, newer)
    except VersionError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        print(json.dumps({
            "added": [{"sha256": m.sha256, "class": m.label, "split": m.split} for m in result.added],
            "removed": [{"sha256": m.sha256, "class": m.label, "split": m.split} for m in result.removed],
            "relabelled": [{"sha256": new.sha256, "from": old.label, "to": new.label}
                           for old, new in result.relabelled],
        }))
        return
    table = Table("change", "image", "class", title=f"{older} -> {newer}")
    for member in result.added:
        table.add_row("added", member.sha256[:12], member.label)
    for member in result.removed:
        table.add_row("removed", member.sha256[:12], member.label)
    for old, new in result.relabelled:
        table.add_row("relabelled", new.sha256[:12], f"{old.label} -> {new.label}")
    console.print(table)
    console.print(f"{len(result.added)} added, {len(result.removed)} removed, {len(result.relabelled)} relabelled")


@dataset.command()
@click.option("--name", help="Name of the new version (default: the builder picks v<N>).")
@click.option("--parent", help="Parent version (default: the active version).")
@click.option("--notes", default="", help="Free text kept with the version.")
@click.option("--by", "requested_by", default="cli", show_default=True, help="Who asks for it.")
@click.option("--wait", "wait_s", default=120.0, show_default=True, help="Seconds to wait for the builder.")
def create(name: str | None, parent: str | None, notes: str, requested_by: str, wait_s: float) -> None:
    """Ask the builder (`wastex worker builder`) for a version = parent + the staged labels, and wait for it."""
    settings = load_settings()
    request_id = f"cli-{uuid.uuid4().hex}"
    payload = {"request_id": request_id, "requested_by": requested_by, "notes": notes, "trigger": "manual"}
    payload.update({key: value for key, value in (("name", name), ("parent", parent)) if value})
    try:
        request = new_event(EventType.CREATE_VERSION_REQUESTED, payload, "cli")
    except InvalidEvent as error:
        raise click.ClickException(str(error)) from None
    publisher = EventPublisher(settings)
    publisher.publish(request)
    publisher.flush()
    with db_sessions(settings).begin() as session:
        audit.record(session, audit.cli_operator(), "version_request", name or request_id,
                     {"request_id": request_id, "parent": parent, "notes": notes, "requested_by": requested_by})
    store = VersionStore(db_sessions(settings))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        version = store.by_request(request_id)
        if version is not None and version.announced_at is not None:
            _print_stats(version.stats, f"{version.name} (parent {store.parent_name(version) or 'none'}): "
                                        f"{version.changes}")
            return
        time.sleep(0.5)
    raise click.ClickException(f"no version for request {request_id} after {wait_s:.0f} s: is `wastex worker "
                               f"builder` running? The request stays queued and will be answered.")


@dataset.command()
def staged() -> None:
    """Label decisions waiting for the next version (latest per image)."""
    rows = _store().staged()
    table = Table("image", "decision", "by", "at", title=f"{len(rows)} staged decisions")
    for row in rows:
        table.add_row(row.sha256[:12], row.label or f"leave out ({row.event_type})", row.operator_id,
                      f"{row.decided_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


@dataset.command()
@click.argument("name")
def activate(name: str) -> None:
    """Make NAME the active version (what training and new versions build on by default)."""
    try:
        _store().activate(name, by=audit.cli_operator())
    except VersionError as error:
        raise click.ClickException(str(error)) from None
    console.print(f"{name} is the active dataset version")
