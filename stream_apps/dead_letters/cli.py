"""`wastex deadletters list|replay`: what the consumers gave up on, and sending it again once the cause is fixed."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from infra.settings import load_settings
from schemas.events import DeadLetterReason, Event
from stream_apps.dead_letters.selection import Selection, parse_since, summary_row

console = Console(soft_wrap=True)
_DETAIL_SHOWN = 80


def _since(_context: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value, datetime.now(UTC))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _selection_options(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option("--since", callback=_since, metavar="T",
                           help="Only dead letters from T on: an ISO timestamp (UTC unless it says) or a duration "
                                "back from now such as 30m, 2h, 1d.")(command)
    return click.option("--reason", type=click.Choice([str(r) for r in DeadLetterReason]),
                        help="Only dead letters with this reason.")(command)


def _cut(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else f"{line[:width - 1]}…"


def _original(row: dict, prefix: str) -> str:
    return f"{row['original_topic'].removeprefix(prefix)}[{row['original_partition']}]@{row['original_offset']}"


def _read(reason: str | None, since: datetime | None) -> tuple[list[Event], list[Event]]:
    from stream_apps.dead_letters.reader import read_dead_letters

    try:
        every = read_dead_letters(load_settings())
    except (RuntimeError, TimeoutError) as error:  # the topic is missing or Kafka does not answer
        raise click.ClickException(str(error)) from None
    return every, Selection(reason, since).select(every)


@click.group()
def deadletters() -> None:
    """Dead letters: records a consumer gave up on, with the reason and the original bytes."""


@deadletters.command(name="list")
@_selection_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
def list_letters(reason: str | None, since: datetime | None, as_json: bool) -> None:
    """Show each dead letter: when, service, reason, original record, detail, and whether it was replayed."""
    from stream_apps.dead_letters.replay import replayed_ids

    settings = load_settings()
    _, selected = _read(reason, since)
    replayed = replayed_ids(settings, [letter.event_id for letter in selected])
    rows = [{**summary_row(letter), "replayed": letter.event_id in replayed} for letter in selected]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table("failed at", "service", "reason", "original", "original event id", "detail", "replayed",
                  title=f"{len(rows)} dead letters")
    for row in rows:
        table.add_row(row["failed_at"], row["service"], row["reason"], _original(row, settings.topic_prefix),
                      row["original_event_id"] or "-", _cut(row["detail"], _DETAIL_SHOWN),
                      "yes" if row["replayed"] else "no")
    console.print(table)


@deadletters.command()
@_selection_options
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; publish and record nothing.")
@click.option("--by", "replayed_by", default=getpass.getuser, show_default="the current user",
              help="Who replays (recorded with each replayed dead letter).")
def replay(reason: str | None, since: datetime | None, dry_run: bool, replayed_by: str) -> None:
    """Publish each selected dead letter's original record to its original topic again, once.

    A dead letter replayed before (or another dead letter of the same record) is not published again.
    """
    from stream_apps.dead_letters.replay import Replayer, Verdict

    settings = load_settings()
    every, selected = _read(reason, since)
    report = Replayer(settings, replayed_by[:64]).replay(selected, every, dry_run=dry_run)
    for result in report.results:
        row = summary_row(result.letter)
        note = f": {result.detail}" if result.detail else ""
        console.print(f"{result.verdict}  {row['reason']}  {_original(row, settings.topic_prefix)}  "
                      f"{row['original_event_id'] or '-'}{note}", highlight=False)
    first = Verdict.WOULD_REPLAY if dry_run else Verdict.REPLAYED
    counts = [(first, report.count(first)), (Verdict.ALREADY_REPLAYED, report.count(Verdict.ALREADY_REPLAYED)),
              (Verdict.SKIPPED, report.count(Verdict.SKIPPED))]
    if report.count(Verdict.FAILED):
        counts.append((Verdict.FAILED, report.count(Verdict.FAILED)))
    console.print(", ".join(f"{verdict}: {count}" for verdict, count in counts), highlight=False)
    if report.count(Verdict.FAILED):
        raise SystemExit(1)
