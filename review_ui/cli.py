"""`wastex ui ...`: serve the review UI, run the queue projection, manage operators, import labelled images.

Account changes from here are audited as `cli:<OS user>`: whoever has a shell with the settings is trusted.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from infra.clients import db_sessions
from infra.settings import Settings, load_settings

console = Console(soft_wrap=True)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group()
def ui() -> None:
    """The operator review UI: OOD queue, labelling, classes, imports, live counts."""


@ui.command()
@click.option("--host", help="Address to listen on (default WASTEX_UI_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default WASTEX_UI_PORT, 8080).")
@click.option("--threads", default=8, show_default=True, help="Request threads.")
@click.option("--projection/--no-projection", default=True, show_default=True,
              help="Also project ImageFlaggedOOD events into the queue and run the scoring monitor (or run "
                   "`wastex ui project` and `wastex ui monitor` apart).")
def serve(host: str | None, port: int | None, threads: int, projection: bool) -> None:
    """Serve the review UI (and drain the label outbox, follow the count topics)."""
    from infra.scrape_targets import register_scrape_target
    from infra.web_server import listening, serve_until_stopped
    from review_ui.app import create_app
    from review_ui.services import UiServices

    _logging()
    settings = load_settings()
    host, port = host or settings.ui_host, port or settings.ui_port
    services = UiServices.create(settings, projection=projection)
    server = listening(create_app(services), host, port, threads=threads, ident="wastex-ui")
    services.start()
    console.print(f"review UI on [bold]http://{host}:{port}/[/] (projection {'on' if projection else 'off'})")
    register_scrape_target(settings, "review_ui", "ui", port, host)  # nothing while metrics are off
    try:  # SIGTERM stops like Ctrl-C: the background loops finish their step and close their consumers
        serve_until_stopped(server)
    finally:
        services.stop()


@ui.command()
def project() -> None:
    """Project ImageFlaggedOOD events into the review queue until stopped (Ctrl-C)."""
    from review_ui.projection import OodProjector

    _logging()
    settings = load_settings()
    projector = OodProjector(settings, db_sessions(settings))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    projector.start()
    console.print("projecting images.ood into the review queue; Ctrl-C stops")
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        projector.stop()
        console.print(f"stopped after {projector.projected} new queue items")


@ui.command()
def monitor() -> None:
    """Tally scored images and check every camera for drift until stopped (Ctrl-C); `serve --no-projection` leaves
    this to a process of its own."""
    from review_ui.scoring_monitor import ScoringMonitor

    _logging()
    settings = load_settings()
    scoring_monitor = ScoringMonitor(settings, db_sessions(settings))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    scoring_monitor.start()
    console.print("tallying images.classified and images.ood, checking cameras for drift; Ctrl-C stops")
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        scoring_monitor.stop()


@ui.command("create-operator")
@click.argument("username")
@click.option("--role", type=click.Choice(["labeller", "admin"]),
              help="labeller (default: least privilege) or admin (also imports, versions, promotions).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
@click.option("--reset", is_flag=True, help="Set a new password for an existing operator (keeps the role, ends "
                                            "every open session).")
def create_operator_command(username: str, role: str | None, password_stdin: bool, reset: bool) -> None:
    """Create an operator account (or --reset its password); the password is stored hashed."""
    from infra.db.audit import cli_operator
    from review_ui.operators import LABELLER, OperatorError, create_operator, set_password

    if reset and role:
        raise click.ClickException("--reset keeps the role; change it with `wastex ui set-role NAME ROLE`")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    settings = load_settings()
    try:
        with db_sessions(settings)() as session, session.begin():
            if reset:
                operator = set_password(session, username, password, by=cli_operator())
            else:
                operator = create_operator(session, username, password, role=role or LABELLER, by=cli_operator())
            name, granted = operator.username, operator.role
    except OperatorError as error:
        raise click.ClickException(str(error)) from None
    console.print(f"operator [bold]{name}[/] ({granted}) "
                  f"{'password reset; every open session is ended' if reset else 'created'}")


def _change_operator(change: Callable[..., Any], username: str, *args: Any) -> Any:
    """Run an account change in one transaction, audited as the OS user; a refused change exits with its reason."""
    from infra.db.audit import cli_operator
    from review_ui.operators import OperatorError

    try:
        with db_sessions(load_settings())() as session, session.begin():
            operator = change(session, username, *args, by=cli_operator())
            return operator.username
    except OperatorError as error:
        raise click.ClickException(str(error)) from None


@ui.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(["labeller", "admin"]))
def set_role_command(username: str, role: str) -> None:
    """Make an operator a labeller or an admin (open sessions see the change at their next request)."""
    from review_ui.operators import set_role

    console.print(f"operator [bold]{_change_operator(set_role, username, role)}[/] is now {role}")


@ui.command("deactivate")
@click.argument("username")
def deactivate_command(username: str) -> None:
    """Stop an operator from signing in and end every open session (the account and its history stay)."""
    from review_ui.operators import set_active

    console.print(f"operator [bold]{_change_operator(set_active, username, False)}[/] deactivated; "
                  "every open session is ended")


@ui.command("activate")
@click.argument("username")
def activate_command(username: str) -> None:
    """Let a deactivated operator sign in again (with the same password)."""
    from review_ui.operators import set_active

    console.print(f"operator [bold]{_change_operator(set_active, username, True)}[/] can sign in again")


@ui.command("logout-everywhere")
@click.argument("username")
def logout_everywhere_command(username: str) -> None:
    """End every open session of an operator (a lost laptop, a shared browser); they sign in again."""
    from review_ui.operators import log_out_everywhere

    console.print(f"every session of [bold]{_change_operator(log_out_everywhere, username)}[/] is ended")


@ui.command("operators")
def operators_command() -> None:
    """List the operator accounts: name, role, active, created."""
    from review_ui.operators import list_operators

    with db_sessions(load_settings())() as session:
        rows = list_operators(session)
    table = Table("name", "role", "active", "created", title=f"{len(rows)} operators")
    for row in rows:
        table.add_row(row.username, row.role, "yes" if row.active else "[red]no[/]",
                      f"{row.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


def _drain(settings: Settings) -> int:
    """Send what waits in the outbox; the number still waiting afterwards."""
    from review_ui.outbox import OutboxDrainer, outbox_status

    sessions = db_sessions(settings)
    try:
        OutboxDrainer(settings, sessions).drain_once()
    except Exception as error:
        console.print(f"[red]the label log (Kafka) did not take the events:[/] {error}")
    with sessions() as session:
        return outbox_status(session).pending


@ui.command("import-labelled")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--class", "label", required=True, help="The class of every image.")
@click.option("--new-class", is_flag=True, help="Register the class if it does not exist yet.")
@click.option("--operator", required=True, help="The operator account the labels are given by.")
def import_labelled(paths: tuple[Path, ...], label: str, new_class: bool, operator: str) -> None:
    """Import image files and folders with one class: image store objects plus label events."""
    from infra.clients import minio_client
    from infra.db.audit import cli_operator
    from review_ui.imports import ImportRefused, LabelledImporter, files_under
    from review_ui.operators import find_operator

    settings = load_settings()
    sessions = db_sessions(settings)
    with sessions() as session:
        account = find_operator(session, operator)
    if account is None or not account.active:
        raise click.ClickException(f"no active operator named {operator!r}; see `wastex ui create-operator`")
    importer = LabelledImporter(settings, minio_client(settings), sessions)
    try:
        files = list(files_under(paths))
        outcomes = importer.import_files(((str(p), p.read_bytes()) for p in files), label, account.username,
                                         create_class=new_class, audited_as=cli_operator())
    except ImportRefused as error:
        raise click.ClickException(str(error)) from None
    table = Table("file", "outcome", "detail", title=f"import as {label}")
    for outcome in outcomes:
        colour = "green" if outcome.ok else "red"
        table.add_row(outcome.file_name, f"[{colour}]{outcome.status}[/]", outcome.detail)
    console.print(table)
    waiting = _drain(settings)
    if waiting:
        console.print(f"[yellow]{waiting} label event(s) are saved in the outbox and will be sent by "
                      "`wastex ui serve` or `wastex ui outbox --drain` once Kafka is reachable[/]")
    bad = [o for o in outcomes if not o.ok]
    if bad or waiting:
        sys.exit(1)


@ui.command()
@click.option("--drain", is_flag=True, help="Send the waiting events now.")
def outbox(drain: bool) -> None:
    """How many label events wait for Kafka (and send them with --drain); the latest rejected ones (dead-lettered)."""
    from rich.markup import escape

    from review_ui.outbox import outbox_status

    settings = load_settings()
    waiting = _drain(settings) if drain else None
    with db_sessions(settings)() as session:
        status = outbox_status(session)
    waiting = status.pending if waiting is None else waiting
    console.print(f"{waiting} label event(s) waiting" + (f"; last error: {status.last_error}" if status.last_error
                                                        else ""))
    for row in status.rejected:
        console.print(f"[red]rejected[/] outbox row {row.id} (event {row.event_id}): {escape(row.reason)}")
    if waiting and drain:
        sys.exit(1)
