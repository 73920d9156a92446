"""The fault benchmark's scenarios, small: real services stopped and started again, a worker killed, poison sent.

One deployment serves the module (two scoring workers, the builder, the review queue projection and outbox, a
labelling client, a camera at a steady rate); each test injects one fault and requires that every image
captured around it got exactly one outcome, that every label event reached the label log once and that a
dataset version made afterwards finds every object it names. The services of the `settings` fixture are
stopped and always started again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.fault_harness import FAULTS, FaultFigures, FaultHarness
from bench.photos import sample_photos
from bench.service_outages import start_again
from infra.settings import Settings
from tests.outages import service

OUTAGE_S = 6.0
LEAD_S = 3.0


@pytest.fixture(scope="module")
def harness(settings: Settings, trashnet: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultHarness]:
    photos = sample_photos(trashnet, 300)
    with FaultHarness(settings, photos, rate=2.0, log_dir=tmp_path_factory.mktemp("fault-workers"), seed_photos=12,
                      wait_s=120) as running:
        yield running


@pytest.fixture(autouse=True)
def services_restored(settings: Settings) -> Iterator[None]:
    """Whatever a test did, the next one finds every service running."""
    yield
    for name in ("postgres", "minio", "kafka"):
        start_again(service(settings, name))


def _damage(figures: FaultFigures) -> dict[str, object]:
    """Every figure that must be zero (or empty) after a fault, with its value."""
    return {"lost": figures.lost, "duplicated": figures.duplicated,
            "transient_dead_letters": figures.transient_dead_letters, "other_dead_letters": figures.other_dead_letters,
            "poison_not_dead_lettered": figures.poison_not_dead_lettered,
            "label_events_lost": figures.label_events_lost, "label_events_duplicated": figures.label_events_duplicated,
            "missing_dataset_objects": figures.missing_dataset_objects, "workers_restarted": figures.workers_restarted,
            "errors": figures.errors}


NO_DAMAGE = {"lost": 0, "duplicated": 0, "transient_dead_letters": 0, "other_dead_letters": 0,
             "poison_not_dead_lettered": 0, "label_events_lost": 0, "label_events_duplicated": 0,
             "missing_dataset_objects": 0, "workers_restarted": 0, "errors": []}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_mid_stream_loses_repeats_and_dead_letters_no_good_image_or_label(harness: FaultHarness,
                                                                                   fault: str) -> None:
    """MinIO, PostgreSQL or the broker stopped, a worker killed with kill -9, or poison records sent."""
    figures = harness.inject(fault, OUTAGE_S, LEAD_S)
    assert _damage(figures) == NO_DAMAGE
    assert figures.captured > 0 and figures.recovery_s is not None
    if fault == "poison":
        assert len(harness.poison) == 3


def test_counts_equal_the_classified_outcomes_and_each_label_event_is_logged_once(harness: FaultHarness) -> None:
    totals = harness.finish()
    assert totals["counts_mismatch"] == 0
    assert totals["labelling_errors"] == []
    assert totals["label_events"] > 0
    assert all(f.label_events_lost == 0 and f.label_events_duplicated == 0 for f in harness.phases.values())
