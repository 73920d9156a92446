"""How every benchmark reports: one JSON object with `--json`, else a table of figures and targets."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table


def print_figures(title: str, figures: dict[str, object], targets: dict[str, bool], as_json: bool) -> None:
    if as_json:
        print(json.dumps({**figures, "targets": targets}, sort_keys=False))
        return
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    for name, met in targets.items():
        table.add_row(f"target {name}", "[green]met[/]" if met else "[red]missed[/]")
    Console().print(table)
