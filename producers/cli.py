"""`wastex produce` (the camera simulator) and `wastex ingest` (the HTTP ingest and its camera tokens)."""

from __future__ import annotations

import getpass
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from infra.settings import load_settings

console = Console(soft_wrap=True)
notes = Console(soft_wrap=True, stderr=True)  # what a script capturing a command's output does not want


@click.command()
@click.option("--source", required=True, help="A folder of photos (one sub-folder per class is fine), or 'synthetic'.")
@click.option("--cameras", default=3, show_default=True, type=click.IntRange(min=1), help="Simulated cameras.")
@click.option("--rate", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="Images per second over all cameras (0: as fast as possible).")
@click.option("--count", default=100, show_default=True, type=click.IntRange(min=1), help="Images to send.")
@click.option("--site", "site_id", default="site-1", show_default=True, help="Site id of the cameras.")
@click.option("--camera-prefix", default="cam", show_default=True, help="Camera ids are <prefix>-1 ... <prefix>-N.")
@click.option("--look", type=click.Choice(["as-is", "floor"]), default="as-is", show_default=True,
              help="'floor': each photo re-shot as another site's camera sees it (object on a textured floor, "
                   "warm light, tilted view).")
def produce(source: str, cameras: int, rate: float, count: int, site_id: str, camera_prefix: str, look: str) -> None:
    """Simulate cameras: put each image in MinIO (captures/<sha256>.<ext>), then produce ImageCaptured."""
    from infra.clients import minio_client
    from infra.publisher import EventPublisher
    from producers.camera_simulator import CameraSimulator
    from producers.capture import CaptureSink
    from producers.image_sources import floor_look_source, folder_source, synthetic_source
    from producers.upload_checks import UploadRefused, check_identifier

    try:
        check_identifier("site_id", site_id)
        check_identifier("camera_id", f"{camera_prefix}-{cameras}")
    except UploadRefused as refusal:
        raise click.BadParameter(refusal.message, param_hint="--site or --camera-prefix") from None
    settings = load_settings()
    if source == "synthetic":
        images = synthetic_source(seed=uuid.uuid4().int % 1_000_000)
    elif Path(source).is_dir():
        images = folder_source(Path(source))
    else:
        raise click.BadParameter(f"{source!r} is neither a folder nor 'synthetic'", param_hint="--source")
    if look == "floor":
        images = floor_look_source(images)
    sink = CaptureSink(minio_client(settings), settings.bucket_images, EventPublisher(settings))
    simulator = CameraSimulator(sink, cameras, site_id, camera_prefix)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("capturing", total=count)
        summary = simulator.run(images, count, rate, on_sent=lambda _: progress.advance(task))
    console.print(f"sent {summary.sent} images ({summary.bytes_sent / 2**20:.1f} MiB) from {cameras} cameras in "
                  f"{summary.elapsed_s:.1f} s ({summary.rate:.1f} img/s); failed {summary.failed}")
    for camera, sent in sorted(summary.per_camera.items()):
        console.print(f"  {camera}: {sent}")
    for error in summary.errors[:10]:
        console.print(f"[red]  {error}[/]")
    sys.exit(1 if summary.failed else 0)


@click.group(invoke_without_command=True)
@click.pass_context
def ingest(context: click.Context) -> None:
    """HTTP ingest for cameras: `serve` it (what `wastex ingest` alone does) and manage its camera `token`s."""
    if context.invoked_subcommand is None:
        context.invoke(serve)


@ingest.command()
@click.option("--host", help="Address to listen on (default WASTEX_INGEST_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default WASTEX_INGEST_PORT, 8081).")
def serve(host: str | None, port: int | None) -> None:
    """Serve POST /images for cameras holding a token; the token fixes camera_id and site_id.

    An optional captured_at (RFC 3339) more than WASTEX_CLOCK_SKEW_S in the future is refused.
    """
    import logging

    from infra.scrape_targets import register_scrape_target
    from infra.web_server import serve_until_stopped
    from producers.http_ingest import create_ingest_app, create_ingest_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    host, port = host or settings.ingest_host, port or settings.ingest_port
    server = create_ingest_server(settings, create_ingest_app(settings), host, port)
    console.print(f"HTTP ingest on [bold]http://{host}:{port}/images[/] ({settings.ingest_threads} threads, "
                  f"{settings.ingest_max_decodes} images checked at once)")
    register_scrape_target(settings, "ingest", "ingest", port, host)  # nothing while metrics are off
    serve_until_stopped(server)


@ingest.group()
def token() -> None:
    """Camera tokens: each lets one camera post to the ingest, as itself only."""


@token.command("create")
@click.option("--camera", "camera_id", required=True, help="The camera id the token posts as.")
@click.option("--site", "site_id", required=True, help="The site id the token posts as.")
@click.option("--by", "created_by", default=getpass.getuser, show_default="the current user", help="Who creates it.")
def create_token(camera_id: str, site_id: str, created_by: str) -> None:
    """Create a token and print it once (only its hash is kept): configure the camera with it now."""
    from infra.clients import db_sessions
    from producers.camera_tokens import CameraTokenError, issue_token

    try:
        with db_sessions(load_settings())() as session, session.begin():
            issued = issue_token(session, camera_id, site_id, created_by)
    except CameraTokenError as error:
        raise click.ClickException(str(error)) from None
    notes.print(f"token {issued.prefix}... for camera [bold]{issued.camera_id}[/] at site {issued.site_id}; "
                "it is shown only now, send it as 'Authorization: Bearer <token>':")
    click.echo(issued.token)


@token.command("list")
def list_tokens_command() -> None:
    """Every camera token: prefix, camera, site, created, last used, revoked."""
    from rich.table import Column, Table

    from infra.clients import db_sessions
    from producers.camera_tokens import list_tokens

    with db_sessions(load_settings())() as session:
        tokens = list_tokens(session)
    # `revoke` needs the prefix whole, however narrow the terminal.
    table = Table(Column("prefix", no_wrap=True), "camera", "site", "created (UTC)", "by", "last used", "revoked")
    for row in tokens:
        table.add_row(row.prefix, row.camera_id, row.site_id, _moment(row.created_at), row.created_by,
                      _moment(row.last_used_at), _moment(row.revoked_at))
    console.print(table if tokens else "no camera tokens yet: `wastex ingest token create --camera C --site S`")


@token.command("revoke")
@click.argument("prefix", required=False)
@click.option("--camera", "camera_id", help="Revoke every active token of this camera instead.")
def revoke_token(prefix: str | None, camera_id: str | None) -> None:
    """Revoke a token by the prefix `token list` shows (or all of a camera's): its next request gets 401."""
    from infra.clients import db_sessions
    from producers.camera_tokens import CameraTokenError, revoke_tokens

    try:
        with db_sessions(load_settings())() as session, session.begin():
            revoked = [(row.prefix, row.camera_id, row.site_id)
                       for row in revoke_tokens(session, prefix=prefix, camera_id=camera_id)]
    except CameraTokenError as error:
        raise click.ClickException(str(error)) from None
    for token_prefix, camera, site in revoked:
        console.print(f"revoked {token_prefix}... of camera {camera} at site {site}")


def _moment(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value is not None else "-"
