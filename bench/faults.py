"""`wastex bench faults`: a steady stream of photos through a whole deployment while, in turn, MinIO,
PostgreSQL and the Kafka broker are stopped, a scoring worker is killed and poison records are sent.

After each fault the benchmark waits for recovery and checks that every captured image got exactly one
outcome, that the label actions reached the label log once and that a dataset version made then still finds
every object it names; at the end, that the counts equal the classified outcomes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from bench.fault_harness import FAULTS, FaultFigures, FaultHarness
from bench.photos import sample_photos, trashnet_dir
from bench.report import print_figures
from infra.settings import load_settings

RECOVERY_TARGET_S = 30.0
# Figures whose target is 0, per fault and in total.
ZERO_TARGETS = ("lost", "duplicated", "transient_dead_letters", "other_dead_letters", "poison_not_dead_lettered",
                "label_events_lost", "label_events_duplicated", "missing_dataset_objects", "workers_restarted")


def run_faults(harness: FaultHarness, faults: tuple[str, ...], outage_s: float, lead_s: float) -> dict[str, object]:
    """Every fault in turn on a started harness; the benchmark's figures and targets."""
    for fault in faults:
        harness.inject(fault, outage_s, lead_s)
    totals = harness.finish()
    per_fault = {name: figures.as_dict() for name, figures in harness.phases.items()}
    for name in ZERO_TARGETS:
        totals[name] = sum(figures[name] or 0 for figures in per_fault.values())
    totals["unchecked_versions"] = sum(figures["missing_dataset_objects"] is None for figures in per_fault.values())
    recoveries = [figures["recovery_s"] for figures in per_fault.values()]
    totals["max_recovery_s"] = max((r for r in recoveries if r is not None), default=None)
    targets = {f"{name} == 0": totals[name] == 0 for name in ZERO_TARGETS}
    targets["counts_mismatch == 0"] = totals["counts_mismatch"] == 0
    targets["every version checked"] = totals["unchecked_versions"] == 0
    targets[f"recovery_s < {RECOVERY_TARGET_S:.0f} for every fault"] = all(
        r is not None and r < RECOVERY_TARGET_S for r in recoveries)
    return {"faults": per_fault, "totals": totals, "targets": targets}


def _print_table(result: dict[str, object], title: str) -> None:
    faults: dict[str, dict[str, object]] = result["faults"]
    table = Table(title=title)
    table.add_column("figure")
    for name in faults:
        table.add_column(name, justify="right")
    for figure in FaultFigures().as_dict():
        if figure in ("errors", "dead_letter_reasons"):
            continue
        values = [faults[name][figure] for name in faults]
        table.add_row(figure, *(f"{v:.1f}" if isinstance(v, float) else "-" if v is None else str(v) for v in values))
    console = Console()
    console.print(table)
    for name, value in result["totals"].items():
        console.print(f"{name}: {value}")
    for name, met in result["targets"].items():
        console.print(f"target {name}: " + ("[green]met[/]" if met else "[red]missed[/]"))
    for name, figures in faults.items():
        if figures["dead_letter_reasons"]:
            console.print(f"{name}: dead letters of good photos by reason: {figures['dead_letter_reasons']}")
        for error in figures["errors"]:
            console.print(f"[yellow]{name}: {error}[/]")


@click.command()
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path),
              help="TrashNet folder (default: $WASTEX_TRASHNET_DIR).")
@click.option("--rate", default=5.0, show_default=True, help="Images per second of the steady load.")
@click.option("--outage-s", default=30.0, show_default=True, help="How long each service stays stopped.")
@click.option("--lead-s", default=10.0, show_default=True, help="Normal load before each fault.")
@click.option("--photos", "photo_count", default=1200, show_default=True,
              help="Distinct photos, sent in turn (a photo comes again only after all others).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def faults(dataset: Path | None, rate: float, outage_s: float, lead_s: float, photo_count: int,
           as_json: bool) -> None:
    """Images lost, duplicated or dead-lettered, label events lost, dataset objects missing, through faults."""
    photos = sample_photos(trashnet_dir(dataset), photo_count)
    # The workers' logs are kept: they explain a missed target.
    logs = Path(tempfile.mkdtemp(prefix="wastex-bench-faults-"))
    with FaultHarness(load_settings(), photos, rate=rate, log_dir=logs) as harness:
        result = run_faults(harness, FAULTS, outage_s, lead_s)
    figures = {"faults": result["faults"], "totals": result["totals"], "rate_ips": rate, "outage_s": outage_s,
               "worker_logs": str(logs)}
    if as_json:
        print_figures("Fault benchmark", figures, result["targets"], as_json=True)
    else:
        _print_table(result, f"Fault benchmark: {rate:g} images/s, outages of {outage_s:g} s (worker logs: {logs})")
