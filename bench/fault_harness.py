"""The fault benchmark's system under test, and the faults: an isolated deployment with a seed dataset version,
two scoring workers, the version builder, the review UI's projection and outbox, a labelling client and a
steady camera; then, one at a time, a store stopped, a worker killed, poison records sent.

`FaultHarness` is shared by `wastex bench faults` and tests/integration/test_faults.py.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.dataset_check import missing_manifest_objects, request_version
from bench.fault_ledger import OutcomeFigures, StreamLedger
from bench.labelling_client import LabellingClient
from bench.models import TRASHNET_CLASSES, untrained_head_model
from bench.poison import poison_records, publish_raw
from bench.service_outages import OUTAGES, service_stopped
from bench.steady_camera import SteadyCamera
from infra.clients import minio_client
from infra.db.dataset_versions import VersionStore
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment, environment
from infra.publisher import EventPublisher
from infra.services.process import free_port
from infra.settings import Settings
from producers.capture import CaptureSink
from review_ui.services import UiServices
from schemas.model_artefact import KERAS_FILE, ArtefactInfo
from schemas.ood_scores import energy_score
from stream_apps.counts_reader import read_totals
from stream_apps.worker_process import WASTEX, WorkerProcess
from training_job.model_registry import import_model

FAULTS = ("minio", "postgres", "kafka", "worker_kill", "poison")
SEED_VERSION = "seed"


@dataclass
class FaultFigures(OutcomeFigures):
    """What one fault did to the images captured around it (see README, Benchmarks)."""

    label_events_lost: int = 0
    label_events_duplicated: int = 0
    missing_dataset_objects: int | None = None  # None: no version could be made to check
    recovery_s: float | None = None  # None: nothing routed within the wait
    captured: int = 0
    workers_restarted: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _ood_share_info(keras_file: Path, photos: list[bytes], share: float, settings: Settings) -> ArtefactInfo:
    """Thresholds that flag about `share` of the photos: tau_E at that quantile of their energies."""
    import keras

    from stream_apps.scoring.decode import ImageLimits, decode_image

    model = keras.models.load_model(keras_file, compile=False)
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    pixels = np.stack([decode_image(photo, model.input_shape[1], limits) for photo in photos]).astype(np.float32)
    energies = energy_score(model.predict(pixels, verbose=0))
    return ArtefactInfo(TRASHNET_CLASSES, float(np.quantile(energies, 1.0 - share)), 0.0)


class FaultHarness:
    """Use as a context manager; `inject` one fault after another, then `finish` for the final figures."""

    def __init__(self, settings: Settings, photos: list[bytes], *, rate: float, log_dir: Path, seed_photos: int = 24,
                 ood_share: float = 0.3, delete_delay_s: float = 10.0, label_every_s: float = 2.0,
                 wait_s: float = 180.0) -> None:
        self.settings = settings
        self._photos = photos
        self._rate = rate
        self._log_dir = log_dir
        self._seed_photos = seed_photos
        self._ood_share = ood_share
        self._delete_delay_s = delete_delay_s
        self._label_every_s = label_every_s
        self.wait_s = wait_s
        self.isolated: Settings | None = None
        self.workers: list[WorkerProcess] = []
        self.builder: WorkerProcess | None = None
        self.phases: dict[str, FaultFigures] = {}
        self.poison: set[str] = set()
        self._poison_phase: dict[str, str] = {}
        self._ui: UiServices | None = None
        self.ledger: StreamLedger | None = None
        self.camera: SteadyCamera | None = None
        self.labeller: LabellingClient | None = None
        self._load_stopped = False

    # --- set-up ---------------------------------------------------------------------------------------------

    def __enter__(self) -> FaultHarness:
        self.isolated = create_deployment(self.settings)
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        isolated = self.isolated
        assert isolated is not None
        self._register_model(isolated)
        self._register_seed(isolated)
        name = isolated.postgres_db  # worker names (and their state folders) of this deployment only
        self.workers = [WorkerProcess(isolated, f"faults-{name}-scoring-{i}", free_port(), self._log_dir,
                                      WASTEX_DELETE_DELAY_S=str(self._delete_delay_s)) for i in range(2)]
        self.builder = WorkerProcess(isolated, f"faults-{name}-builder", free_port(), self._log_dir, kind="builder")
        for worker in (*self.workers, self.builder):
            worker.start()
        for worker in self.workers:
            worker.wait_serving(timeout_s=600)
        self.builder.wait_healthy(timeout_s=600)
        self._ui = UiServices.create(isolated).start()
        self.ledger = StreamLedger(isolated)
        self.labeller = LabellingClient(self._ui.sessions, self._label_every_s, isolated.retry_max_delay_s).start()
        self.camera = SteadyCamera(isolated, self._photos, self._rate).start()
        self._store = VersionStore(self._ui.sessions)
        self._publisher = EventPublisher(isolated)

    def _register_model(self, isolated: Settings) -> None:
        with tempfile.TemporaryDirectory(prefix="wastex-faults-model-") as scratch:
            folder = Path(scratch)
            untrained_head_model(folder)
            info = _ood_share_info(folder / KERAS_FILE, self._photos[:32], self._ood_share, isolated)
            imported = import_model(isolated, folder / KERAS_FILE, info.classes, version="bench-faults-0",
                                    tau_energy=info.tau_energy, tau_softmax=info.tau_softmax)
        promote(isolated, imported.version, promoted_by="bench", source="bench")

    def _register_seed(self, isolated: Settings) -> None:
        """A seed version of photos that the cameras also send: captures of its images must not delete them."""
        with tempfile.TemporaryDirectory(prefix="wastex-faults-seed-") as scratch:
            for index, photo in enumerate(self._photos[:self._seed_photos]):
                # sample_photos takes the class folders in turn, so photo i is of class i mod 6
                folder = Path(scratch) / TRASHNET_CLASSES[index % len(TRASHNET_CLASSES)]
                folder.mkdir(exist_ok=True)
                (folder / f"{index}.jpg").write_bytes(photo)
            subprocess.run([WASTEX, "dataset", "register", scratch, "--name", SEED_VERSION, "--by", "bench"],
                           env=environment(isolated, WASTEX_HOME=str(isolated.state_dir)), check=True,
                           stdout=subprocess.DEVNULL)

    # --- faults ---------------------------------------------------------------------------------------------

    def inject(self, fault: str, outage_s: float, lead_s: float) -> FaultFigures:
        """`lead_s` of normal load, the fault, then recovery and the dataset check; figures so far."""
        assert self.camera is not None and self.labeller is not None and self.ledger is not None
        figures = self.phases[fault] = FaultFigures()
        self.camera.phase = self.labeller.phase = fault
        self.ledger.poll(lead_s)
        back_at = self._fault(fault, outage_s)
        figures.workers_restarted = self._restart_exited_workers()
        deadline = time.monotonic() + self.wait_s
        while (recovery := self.ledger.first_routed_after(back_at)) is None and time.monotonic() < deadline:
            self.ledger.poll(0.5)
        figures.recovery_s = recovery
        ids = self._phase_ids(fault)
        if not self.ledger.wait_for_outcomes(ids, self.wait_s):
            figures.errors.append(f"{len(ids - self.ledger.outcomes.keys())} images without an outcome after "
                                  f"{self.wait_s:.0f} s")
        figures.workers_restarted += self._restart_exited_workers()
        self._check_dataset(figures)
        labels = self._phase_labels(fault)
        self._wait_for_label_log(labels)
        self._tally(fault, figures, ids, labels)
        return figures

    def _fault(self, fault: str, outage_s: float) -> float:
        """Inject `fault`; the moment (time.time()) the system had its service back."""
        assert self.isolated is not None
        if fault in OUTAGES:
            with service_stopped(self.isolated, fault):
                self.ledger.poll(outage_s)
        elif fault == "worker_kill":
            self.workers[0].stop(kill=True)
            self.workers[0].start()
        elif fault == "poison":
            records = poison_records(CaptureSink(minio_client(self.isolated), self.isolated.bucket_images,
                                                 self._publisher), minio_client(self.isolated), self._photos[0])
            publish_raw(self.isolated, records)
            self.poison |= records.keys()
            self._poison_phase.update(dict.fromkeys(records, fault))
        else:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        return time.time()

    def _restart_exited_workers(self) -> int:
        """A worker that died of the fault is a failure to report; it is started again so the run goes on."""
        exited = [w for w in self._processes() if w.process is not None and w.process.poll() is not None]
        for worker in exited:
            self.phases[self.camera.phase].errors.append(f"{worker.name} exited: {worker.log_tail(5)}")
            worker.start()
        return len(exited)

    def _processes(self) -> list[WorkerProcess]:
        return self.workers + ([self.builder] if self.builder is not None else [])

    def _phase_ids(self, fault: str) -> set[str]:
        return {event_id for event_id, phase in self._sent().items() if phase == fault}

    def _check_dataset(self, figures: FaultFigures) -> None:
        try:
            version = request_version(self._publisher, self._store, self.wait_s)
            figures.missing_dataset_objects = len(missing_manifest_objects(minio_client(self.isolated), self._store,
                                                                           version))
        except TimeoutError as error:
            figures.errors.append(str(error))

    # --- the end --------------------------------------------------------------------------------------------

    def finish(self) -> dict[str, object]:
        """Stop the load, wait for every outcome and label event; per-fault figures final, plus totals."""
        self._stop_load()
        sent = self._sent()
        self.ledger.wait_for_outcomes(set(sent), self.wait_s)
        self._wait_for_label_log(set(self.labeller.label_events))
        self.ledger.poll(5)  # late duplicates
        for phase, figures in self.phases.items():
            self._tally(phase, figures)
        return {
            "counts_mismatch": self._counts_mismatch(),
            "images": len(sent),
            "label_events": len(self.labeller.label_events),
            "labelling_errors": self.labeller.errors,
            "downstream_dead_letters": len(self.ledger.downstream_dead_letters),
        }

    def _sent(self) -> dict[str, str]:
        """Every event id the harness sent (camera and poison), with its phase."""
        return {**self.camera.sent, **self._poison_phase}  # a copy: the camera adds events from its own thread

    def _phase_labels(self, phase: str) -> set[str]:
        # copied first: the client adds events from its own thread
        return {event_id for event_id, tag in dict(self.labeller.label_events).items() if tag == phase}

    def _wait_for_label_log(self, event_ids: set[str]) -> None:
        """Until the outbox sent `event_ids` and the ledger read them (or the wait is over)."""
        self._ui.drainer.wait_for(event_ids, self.wait_s)
        deadline = time.monotonic() + 30
        while not event_ids <= self.ledger.label_events.keys() and time.monotonic() < deadline:
            self.ledger.poll(0.5)

    def _tally(self, phase: str, figures: FaultFigures, ids: set[str] | None = None,
               labels: set[str] | None = None) -> None:
        """The phase's figures from what the ledger read so far: of the images and label events it waited for
        (by default, every one of the phase)."""
        ids = self._phase_ids(phase) if ids is None else ids
        labels = self._phase_labels(phase) if labels is None else labels
        for name, value in asdict(self.ledger.figures(ids, self.poison)).items():
            setattr(figures, name, value)
        figures.captured = len(ids)
        figures.label_events_lost = sum(self.ledger.label_events[e] == 0 for e in labels)
        figures.label_events_duplicated = sum(max(0, self.ledger.label_events[e] - 1) for e in labels)

    def _counts_mismatch(self) -> int:
        """Images by which counts.totals per class differ from the classified outcomes, once they settle."""
        expected = self.ledger.classified_per_class()
        deadline = time.monotonic() + 60
        while True:
            counts = read_totals(self.isolated)["class"]
            mismatch = sum(abs(counts.get(name, 0) - expected.get(name, 0)) for name in counts.keys() | expected)
            if mismatch == 0 or time.monotonic() > deadline:
                return mismatch
            time.sleep(2)

    def _stop_load(self) -> None:
        if self._load_stopped:
            return
        self._load_stopped = True
        if self.labeller is not None:
            self.labeller.stop()
        if self.camera is not None:
            self.camera.stop()

    def __exit__(self, *exc: object) -> None:
        """Everything the harness started is stopped and the deployment dropped, whichever step fails."""
        try:
            self._stop_load()
        finally:
            try:
                if self._ui is not None:
                    self._ui.stop()
                if self.ledger is not None:
                    self.ledger.close()
            finally:
                for worker in self._processes():
                    _stop_worker(worker)
                if self.isolated is not None:
                    drop_deployment(self.isolated)


def _stop_worker(worker: WorkerProcess) -> None:
    """SIGTERM, and SIGKILL for a worker that does not stop within a minute (one waiting for a broker may not)."""
    try:
        worker.stop()
    except subprocess.TimeoutExpired:
        worker.stop(kill=True)
