"""`wastex model ...` (the model registry), `wastex train` and `wastex evaluate` from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from infra.settings import load_settings

console = Console(soft_wrap=True)


@click.group()
def model() -> None:
    """Model registry: import a user's model, list versions, promote one to serve."""


@model.command(name="import")
@click.argument("keras_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--classes", "classes_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Text file with one class name per line, in the model's output order.")
@click.option("--version", help="Version name (default: derived from the file's content).")
@click.option("--tau-energy", type=float, help="OOD energy threshold (default: the seeds' -4.338604).")
@click.option("--tau-softmax", type=float, help="OOD max-softmax threshold (default: the seeds' 0.70).")
@click.option("--promote/--no-promote", default=None,
              help="Serve it now (default: only when no model serves yet).")
def import_command(keras_file: Path, classes_file: Path, version: str | None, tau_energy: float | None,
                   tau_softmax: float | None, promote: bool | None) -> None:
    """Register KERAS_FILE: export to LiteRT (checked against Keras), choose the serving runtime by measurement,
    upload, record in the registry."""
    from infra.db.audit import cli_operator
    from infra.db.registry import production_model
    from infra.db.registry import promote as promote_version
    from training_job.model_registry import SOURCE, RegistryError, import_model, read_class_file

    settings = load_settings()
    try:
        imported = import_model(settings, keras_file, read_class_file(classes_file), version=version,
                                tau_energy=tau_energy, tau_softmax=tau_softmax)
    except RegistryError as error:
        console.print(f"[red]✗ {error}[/]")
        sys.exit(1)
    state = "already registered" if imported.already_registered else "registered"
    console.print(f"{imported.version}: {state} at {imported.artefact_uri} (digest {imported.artefact_digest}); "
                  f"{imported.export.detail}; serving runtime {imported.serving_runtime}")
    if promote or (promote is None and production_model(settings) is None):
        promote_version(settings, imported.version, promoted_by="cli-import", source=SOURCE,
                        audited_as=cli_operator())
        console.print(f"{imported.version}: promoted to production")


@model.command(name="list")
def list_command() -> None:
    """Every registered model version and which one serves."""
    from training_job.model_registry import list_models, serving_runtime

    table = Table("version", "status", "digest", "classes", "tau_energy", "tau_softmax", "runtime", "created")
    for row in list_models(load_settings()):
        # A row registered before digests were recorded is never served: say so where an operator looks.
        digest = row.artefact_digest[:12] if row.artefact_digest else "[red]none: not servable[/]"
        table.add_row(row.version, row.status, digest, str(len(row.classes)), f"{row.tau_energy:.4f}",
                      f"{row.tau_softmax:.3f}", serving_runtime(row),
                      row.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@model.command(name="promote")
@click.argument("version")
@click.option("--by", "promoted_by", default="operator", show_default=True, help="Who promotes.")
def promote_command(version: str, promoted_by: str) -> None:
    """Make VERSION the production model; every scoring worker is told through models.promoted."""
    from infra.db.audit import cli_operator
    from infra.db.registry import RegistryError, promote
    from training_job.model_registry import SOURCE

    try:
        promote(load_settings(), version, promoted_by, source=SOURCE, audited_as=cli_operator())
    except RegistryError as error:
        console.print(f"[red]✗ {error}[/]")
        sys.exit(1)
    console.print(f"{version}: promoted to production")


@model.command(name="rollback")
@click.option("--to", "to_version", help="The model to serve again (default: the one before the current).")
@click.option("--by", "promoted_by", default="operator", show_default=True, help="Who rolls back.")
def rollback_command(to_version: str | None, promoted_by: str) -> None:
    """Serve an earlier model again; every scoring worker swaps to it."""
    from infra.db.audit import cli_operator
    from infra.db.registry import RegistryError, rollback
    from training_job.model_registry import SOURCE

    try:
        event = rollback(load_settings(), to_version, promoted_by, source=SOURCE, audited_as=cli_operator())
    except RegistryError as error:
        console.print(f"[red]✗ {error}[/]")
        sys.exit(1)
    payload = event.payload
    console.print(f"{payload['model_version']}: serving again (was {payload['previous_model_version']})")


@click.command()
@click.option("--dataset", "dataset_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="A manifest file, a folder of class folders, or a folder of train/val/test folders.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New (or empty) directory for the model and its artefacts.")
@click.option("--backbone", default="efficientnet_lite0", show_default=True,
              help="efficientnet_lite0, mobilenet_v2 or inception_v3 (ignored with --from-model).")
@click.option("--epochs", type=click.IntRange(min=0), help="Most fine-tuning epochs (phase 2).")
@click.option("--head-epochs", type=click.IntRange(min=1), help="Most head-training epochs (phase 1).")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), help="Wall-time budget of the training.")
@click.option("--from-model", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Fine-tune this model directory; its head grows when the dataset brings new classes.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--review-rate", type=click.FloatRange(min=0, max=1),
              help="Share of in-distribution images the OOD thresholds send to review (default: WASTEX_REVIEW_RATE, "
                   "0.05).")
def train(dataset_path: Path, out_dir: Path, backbone: str, epochs: int | None, head_epochs: int | None,
          minutes: float | None, from_model: Path | None, seed: int, review_rate: float | None) -> None:
    """Train a waste classifier: frozen-backbone head, then fine-tuning of the top blocks; OOD thresholds calibrated
    to send the review rate of in-distribution images to review."""
    from training_job.dataset_source import DatasetError, load_dataset
    from training_job.trainer import TrainConfig
    from training_job.training_run import run_training

    defaults = TrainConfig()
    config = TrainConfig(backbone=backbone, seed=seed,
                         finetune_epochs=defaults.finetune_epochs if epochs is None else epochs,
                         head_epochs=head_epochs or defaults.head_epochs,
                         time_budget_s=None if minutes is None else minutes * 60)
    settings = load_settings()
    try:
        run = run_training(load_dataset(dataset_path), out_dir, config, from_model=from_model,
                           review_rate=settings.review_rate if review_rate is None else review_rate,
                           drifting_review_rate=settings.drifting_review_rate)
    except (DatasetError, FileExistsError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    metrics = run.metrics
    console.print(f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} on the "
                  f"{metrics['split']} split; tau_energy {run.thresholds.tau_energy:.4f}, "
                  f"tau_softmax {run.thresholds.tau_softmax:.4f} (from {metrics['calibration_images']} images) send "
                  f"{metrics['review_rate']:.1%} of the {metrics['split']} split to review (target "
                  f"{metrics['review_rate_target']:.1%}) and catch {metrics['ood_recall']:.1%} of "
                  f"{metrics['ood_images']} non-waste photos; artefacts in {out_dir}")


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A model directory (model.keras and classes.txt).")
@click.option("--dataset", "dataset_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="A manifest file, a folder of class folders, or a folder of train/val/test folders.")
@click.option("--ood", "ood_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of non-waste images: adds the energy score's OOD AUROC.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a report.")
def evaluate(model_dir: Path, dataset_path: Path, ood_dir: Path | None, split: str, as_json: bool) -> None:
    """Accuracy, macro/weighted precision/recall/F1 and per-class F1 of a model on a dataset split."""
    import keras

    from schemas.model_artefact import KERAS_FILE
    from training_job.artefacts import read_classes
    from training_job.dataset_source import DatasetError, image_files, load_dataset
    from training_job.evaluation import classification_metrics, ood_auroc
    from training_job.inference import predict_logits

    classes = read_classes(model_dir)
    model = keras.models.load_model(model_dir / KERAS_FILE, compile=False)
    if int(model.output_shape[-1]) != len(classes):
        raise click.ClickException(f"{model_dir}: the model has {model.output_shape[-1]} outputs but "
                                   f"{len(classes)} classes")
    try:
        dataset = load_dataset(dataset_path)
        rows = dataset.split(split)
        if not rows:
            raise DatasetError(f"{dataset_path} has no {split} images")
        labels = dataset.labels(rows, classes)
        ood_files = image_files(ood_dir) if ood_dir else []
        if ood_dir and not ood_files:
            raise DatasetError(f"{ood_dir} holds no images")
    except DatasetError as error:
        raise click.ClickException(str(error)) from None
    logits = predict_logits(model, [row.image for row in rows], description=f"evaluating on {split}")
    metrics = classification_metrics(labels, logits, classes)
    document = {"model": str(model_dir), "dataset": str(dataset_path), "split": split, "images": len(rows),
                **metrics.to_json()}
    if ood_files:
        ood_logits = predict_logits(model, [str(path) for path in ood_files], description="scoring OOD images")
        document.update(ood_auroc=ood_auroc(logits, ood_logits), ood_images=len(ood_files))
    if as_json:
        print(json.dumps(document))
        return
    table = Table("figure", "value", title=f"{model_dir} on the {split} split of {dataset_path} ({len(rows)} images)")
    for name in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "ood_auroc"):
        if name in document:
            table.add_row(name, f"{document[name]:.4f}")
    for name, value in metrics.per_class_f1.items():
        table.add_row(f"F1 {name}", f"{value:.4f}")
    console.print(table)
    console.print(metrics.report)
