"""One training run of the trainer: a dataset version's manifest -> a registered candidate model, compared with
the production model on the same test split, promoted when the policy says so.

Steps: the manifest from the datasets bucket (checksum verified; every row a stored image of the images bucket)
-> the production model's artefact (if any) -> training, fine-tuned from it or from the pretrained backbone
-> both models evaluated on the version's test split ->
recommendation -> the candidate registered as model version = run id (artefacts under s3://<models>/<run id>/)
-> auto-promotion. Blocking throughout; the service runs it on its own thread.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras

from infra.clients import minio_client
from infra.db.models import ModelVersion
from infra.db.registry import promote
from infra.object_store import download_prefix, parse_s3_uri
from infra.settings import Settings
from schemas.model_artefact import DIGEST_FILES, KERAS_FILE, artefact_digest
from training_job.artefacts import read_classes, write_json
from training_job.callbacks import EpochCallback
from training_job.classifier import split_classifier
from training_job.comparison import Comparison, baseline_metrics, compare, summary
from training_job.dataset_source import Dataset, DatasetError, ImageReader, load_dataset
from training_job.evaluation import classification_metrics
from training_job.inference import predict_logits
from training_job.model_registry import SOURCE, import_model, record_metrics
from training_job.promotion_policy import PromotionPolicy, Recommendation, Verdict
from training_job.runtime_check import CheckImages, split_check_images
from training_job.trainer import TrainConfig
from training_job.training_run import REVIEW_FIGURES, RunResult, run_training

COMPARISON_FILE = "comparison.json"
PROMOTED_BY = "trainer"
AUTO_PROMOTE = "auto-promote"
# Files import_model uploads itself (the ones the digest covers); the run uploads the rest beside them, never over them.
_REGISTERED_FILES = set(DIGEST_FILES)

Log = Callable[[str], None]


class ModelMismatch(ValueError):
    """The production model's objects are not the bytes its registry row names."""


class ManifestMismatch(DatasetError):
    """The manifest object is not the one the version announced."""


class UntrustedManifest(DatasetError):
    """A version announcing a manifest outside the datasets bucket."""


def train_config(settings: Settings) -> TrainConfig:
    """The trainer's training configuration, from settings."""
    weights = settings.trainer_weights
    return TrainConfig(
        backbone=settings.trainer_backbone,
        weights=None if weights.lower() == "none" else weights,
        batch_size=settings.trainer_batch_size,
        augmented_views=settings.trainer_augmented_views,
        trainable_blocks=settings.trainer_trainable_blocks,
        site_balance=settings.trainer_site_balance,
        background_share=settings.trainer_background_share,
        white_balance=settings.trainer_white_balance,
        colour_temperature=settings.trainer_colour_temperature,
        head_epochs=settings.trainer_head_epochs,
        finetune_epochs=settings.trainer_epochs,
        time_budget_s=settings.trainer_minutes * 60 if settings.trainer_minutes > 0 else None,
    )


def run_config(settings: Settings, production: ModelVersion | None) -> dict[str, Any]:
    """What a run records as its configuration (TrainingRunStarted.config, the row's config)."""
    return {**asdict(train_config(settings)), "review_rate": settings.review_rate,
            "drifting_review_rate": settings.drifting_review_rate,
            "start_from": settings.trainer_start_from,
            "production_model": production.version if production is not None else None,
            "auto_promote": settings.auto_promote, "promote_min_gain": settings.promote_min_gain,
            "promote_max_class_drop": settings.promote_max_class_drop}


@dataclass
class RunOutcome:
    model_version: str
    artefact_uri: str  # the candidate's .keras file
    metrics: dict[str, Any]  # the candidate's metrics.json
    comparison: Comparison
    verdict: Verdict
    promoted: bool
    timings: dict[str, float] = field(default_factory=dict)

    def headline_metrics(self) -> dict[str, float]:
        """The candidate's figures that the registry row and TrainingRunCompleted carry."""
        return headline_metrics(self.comparison, self.metrics)

    def baseline_document(self) -> dict[str, Any] | None:
        """The production model's figures on the same split, for the run row (with per-class detail)."""
        baseline = self.comparison.baseline
        if baseline is None:
            return None
        return {"model_version": self.comparison.baseline_version, "metrics": baseline.to_json()}

    def baseline_event(self) -> dict[str, Any] | None:
        baseline = self.comparison.baseline
        if baseline is None:
            return None
        return {"model_version": self.comparison.baseline_version, "metrics": summary(baseline)}


def headline_metrics(comparison: Comparison, metrics: dict[str, Any]) -> dict[str, float]:
    """The candidate's summary figures and what its OOD thresholds cost and catch (``REVIEW_FIGURES``)."""
    return {**summary(comparison.candidate),
            **{name: float(metrics[name]) for name in REVIEW_FIGURES if name in metrics}}


def fetch_manifest(settings: Settings, manifest: dict[str, str], target: Path) -> Path:
    """The announced manifest object, saved to ``target`` after its checksum was verified; only the datasets bucket
    holds manifests, so an event naming any other place is refused before anything is read."""
    if manifest["bucket"] != settings.bucket_datasets:
        raise UntrustedManifest(f"the version's manifest s3://{manifest['bucket']}/{manifest['object_key']} is not in "
                                f"the datasets bucket s3://{settings.bucket_datasets}/: the trainer reads manifests "
                                f"only from there")
    client = minio_client(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    client.fget_object(manifest["bucket"], manifest["object_key"], str(target))
    checksum = hashlib.sha256(target.read_bytes()).hexdigest()
    if checksum != manifest["sha256"]:
        raise ManifestMismatch(f"s3://{manifest['bucket']}/{manifest['object_key']} has checksum {checksum[:12]}, "
                               f"the version announced {manifest['sha256'][:12]}")
    return target


def fetch_model(settings: Settings, row: ModelVersion, target: Path) -> Path:
    """A registered model's artefact folder (model.keras, classes.txt, thresholds.json, ...), from the models bucket."""
    bucket, prefix = parse_s3_uri(row.artefact_uri)
    if bucket != settings.bucket_models or not prefix.strip("/"):  # as the scoring workers: nowhere else
        raise ModelMismatch(f"model {row.version} is registered at {row.artefact_uri!r}, not in the models bucket "
                            f"s3://{settings.bucket_models}/: refusing to start a run from it")
    download_prefix(minio_client(settings), bucket, prefix, target)
    if not (target / KERAS_FILE).is_file():
        raise FileNotFoundError(f"{row.artefact_uri} holds no {KERAS_FILE}")
    actual = artefact_digest(target)
    if actual != row.artefact_digest:  # what a run starts from is what the registry names, like what serves
        raise ModelMismatch(f"{row.artefact_uri} holds artefact digest {actual}, the registry names "
                            f"{row.artefact_digest} for model {row.version}")
    return target


def fine_tunable(model: keras.Model, classes: list[str], dataset: Dataset, config: TrainConfig) -> str | None:
    """Why ``model`` cannot be the start of this run (None: it can)."""
    missing = sorted(set(classes) - set(dataset.classes))
    if missing:
        return f"it knows classes the version has no images of: {missing}"
    try:
        split_classifier(model, config.trainable_blocks)
    except ValueError as error:
        return f"it cannot be fine-tuned: {error}"
    finally:
        model.trainable = True
    return None


class CandidateRun:
    """Executes one run; ``log`` and ``on_epoch`` report its progress (to the run row and the events)."""

    def __init__(self, settings: Settings, run_id: str, work_dir: Path, log: Log,
                 on_epoch: EpochCallback | None = None) -> None:
        self.settings = settings
        self.run_id = run_id
        self.work_dir = work_dir
        self.log = log
        self.on_epoch = on_epoch
        self.timings: dict[str, float] = {}

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 2)

    def execute(self, manifest: dict[str, str], production: ModelVersion | None) -> RunOutcome:
        settings, config = self.settings, train_config(self.settings)
        begun = time.monotonic()
        dataset = load_dataset(fetch_manifest(settings, manifest, self.work_dir / "manifest.jsonl"),
                               images_bucket=settings.bucket_images)
        counts = dataset.counts()
        self.log(f"dataset: {len(dataset.rows)} images of {len(dataset.classes)} classes "
                 f"({', '.join(f'{split} {sum(per_class.values())}' for split, per_class in counts.items())})")

        base_folder, base_model, base_classes = None, None, None
        if production is not None:
            base_folder = fetch_model(settings, production, self.work_dir / "production")
            base_model = keras.models.load_model(base_folder / KERAS_FILE, compile=False)
            base_classes = read_classes(base_folder)
        self._timed("fetch_s", begun)

        from_model = None
        if production is None:
            self.log("starting from the pretrained backbone: no production model")
        elif settings.trainer_start_from == "pretrained":
            self.log("starting from the pretrained backbone (WASTEX_TRAINER_START_FROM=pretrained)")
        elif (why_not := fine_tunable(base_model, base_classes, dataset, config)) is not None:
            self.log(f"starting from the pretrained backbone: production model {production.version} {why_not}")
        else:
            from_model = base_folder
            self.log(f"fine-tuning production model {production.version} ({len(base_classes)} classes)")

        loader = ImageReader(lambda: minio_client(settings))
        started = time.monotonic()
        result = run_training(dataset, self.work_dir / "candidate", config, loader, from_model=from_model,
                              on_epoch=self.on_epoch, review_rate=settings.review_rate,
                              drifting_review_rate=settings.drifting_review_rate)
        self.timings.update({name: round(value, 2) for name, value in result.trained.timings.items()})
        self._timed("run_s", started)
        split = result.metrics["split"]
        rows = dataset.split(split)
        labels = dataset.labels(rows, result.classes)
        candidate = classification_metrics(labels, result.logits, result.classes)
        self.log(f"candidate on the {split} split ({len(rows)} images): accuracy {candidate.accuracy:.4f}, "
                 f"macro-F1 {candidate.macro_f1:.4f}; OOD thresholds from {result.metrics['calibration_images']} "
                 f"images flag {result.metrics['review_rate']:.1%} of the split (target "
                 f"{result.metrics['review_rate_target']:.1%}) and {result.metrics['ood_recall']:.1%} of "
                 f"{result.metrics['ood_images']} non-waste photos")

        baseline = None
        if production is not None:
            started = time.monotonic()
            logits = predict_logits(base_model, [row.image for row in rows], loader,
                                    description=f"evaluating {production.version} on {split}")
            baseline = baseline_metrics(labels, logits, base_classes, result.classes)
            self._timed("baseline_s", started)
            self.log(f"production {production.version} on the same split: accuracy {baseline.accuracy:.4f}, "
                     f"macro-F1 {baseline.macro_f1:.4f}")
        comparison = compare(candidate, baseline, production.version if production is not None else None)
        verdict = PromotionPolicy(settings.promote_min_gain, settings.promote_max_class_drop).judge(comparison)
        self.log(f"recommendation: {verdict.recommendation} ({verdict.reason})")

        started = time.monotonic()
        # The serving runtime is chosen on the images the thresholds were calibrated on, as the workers decode them.
        artefact_uri = self._register(result, comparison, verdict,
                                      split_check_images(dataset, "val", result.classes, loader))
        self._timed("register_s", started)

        promoted = False
        if verdict.recommendation is Recommendation.PROMOTE and settings.auto_promote:
            promote(settings, self.run_id, promoted_by=PROMOTED_BY, source=SOURCE, action=AUTO_PROMOTE)
            promoted = True
            self.log(f"promoted {self.run_id} to production")
        self._timed("total_s", begun)
        return RunOutcome(self.run_id, artefact_uri, result.metrics, comparison, verdict, promoted, self.timings)

    def _register(self, result: RunResult, comparison: Comparison, verdict: Verdict, check_images: CheckImages
                  ) -> str:
        """The candidate as model version = run id, with every file of the run under the same prefix; the row
        carries the calibration images' energy percentiles, the review rate measured on the evaluated split and
        the serving runtime chosen on `check_images`."""
        out_dir, thresholds = result.out_dir, result.thresholds
        write_json(out_dir / COMPARISON_FILE, {
            "baseline_model_version": comparison.baseline_version,
            "candidate": summary(comparison.candidate),
            "baseline": summary(comparison.baseline) if comparison.baseline is not None else None,
            "macro_f1_delta": comparison.macro_f1_delta,
            "per_class_deltas": comparison.deltas,
            "recommendation": str(verdict.recommendation), "reason": verdict.reason})
        imported = import_model(self.settings, out_dir / KERAS_FILE, result.classes, version=self.run_id,
                                tau_energy=thresholds.tau_energy, tau_softmax=thresholds.tau_softmax,
                                drifting_camera=result.drifting_camera_thresholds,
                                energy_quantiles=result.energy_quantiles, review_rate=result.metrics["review_rate"],
                                check_images=check_images)
        self.log(f"registered model {imported.version} at {imported.artefact_uri} (digest "
                 f"{imported.artefact_digest}); {imported.export.detail}; serving runtime {imported.serving_runtime} "
                 f"(measured on {check_images.source})")
        record_metrics(self.settings, self.run_id, headline_metrics(comparison, result.metrics))
        bucket, prefix = parse_s3_uri(imported.artefact_uri)
        client = minio_client(self.settings)
        for path in sorted(out_dir.iterdir()):
            if path.is_file() and path.name not in _REGISTERED_FILES:
                client.fput_object(bucket, f"{prefix}/{path.name}", str(path))
        return f"{imported.artefact_uri}/{KERAS_FILE}"

