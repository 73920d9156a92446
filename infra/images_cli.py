"""`wastex images gc [--dry-run]`: remove the image objects nothing references any more."""

from __future__ import annotations

import json

import click

from infra.settings import load_settings


@click.group()
def images() -> None:
    """The images bucket: captures/ and the dataset store images/."""


@images.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def gc(dry_run: bool, as_json: bool) -> None:
    """Remove objects older than WASTEX_IMAGE_GC_MIN_AGE_S that no dataset version, review item, import or staged
    label references and that are not kept samples; reports counts and bytes per prefix."""
    from infra.image_retention import ImageRetention

    settings = load_settings()
    report = ImageRetention.of(settings).collect_garbage(settings.image_gc_min_age_s, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"objects older than {settings.image_gc_min_age_s:g} s and unreferenced, in "
               f"{settings.bucket_images}{' (dry run: nothing removed)' if dry_run else ''}:")
    for prefix, counts in report.prefixes.items():
        kept = ", ".join(f"{count} {why}" for why, count in sorted(counts.kept.items())) or "none"
        click.echo(f"  {prefix}/: {counts.objects} objects ({_mib(counts.bytes)}); {verb} {counts.removed} "
                   f"({_mib(counts.removed_bytes)}); kept: {kept}")


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
