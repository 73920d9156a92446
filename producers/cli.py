"""`wastex produce`: the camera simulator."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from infra.settings import load_settings

console = Console(soft_wrap=True)


@click.command()
@click.option("--source", required=True, help="A folder of photos (one sub-folder per class is fine), or 'synthetic'.")
@click.option("--cameras", default=3, show_default=True, type=click.IntRange(min=1), help="Simulated cameras.")
@click.option("--rate", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="Images per second over all cameras (0: as fast as possible).")
@click.option("--count", default=100, show_default=True, type=click.IntRange(min=1), help="Images to send.")
@click.option("--site", "site_id", default="site-1", show_default=True, help="Site id of the cameras.")
def produce(source: str, cameras: int, rate: float, count: int, site_id: str) -> None:
    """Simulate cameras: put each image in MinIO (captures/<sha256>.<ext>), then produce ImageCaptured."""
    from infra.clients import minio_client
    from infra.publisher import EventPublisher
    from producers.camera_simulator import CameraSimulator
    from producers.capture import CaptureSink
    from producers.image_sources import folder_source, synthetic_source
    from producers.upload_checks import UploadRefused, check_identifier

    try:
        check_identifier("site_id", site_id)
    except UploadRefused as refusal:
        raise click.BadParameter(refusal.message, param_hint="--site") from None
    settings = load_settings()
    if source == "synthetic":
        images = synthetic_source(seed=uuid.uuid4().int % 1_000_000)
    elif Path(source).is_dir():
        images = folder_source(Path(source))
    else:
        raise click.BadParameter(f"{source!r} is neither a folder nor 'synthetic'", param_hint="--source")
    sink = CaptureSink(minio_client(settings), settings.bucket_images, EventPublisher(settings))
    simulator = CameraSimulator(sink, cameras, site_id)
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
