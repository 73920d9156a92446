"""Out-of-fold scores of the training images on synthetic head features: every image scored by a head that did not
see it, on the final head's energy scale, and thresholds from them that cost what they say on unseen images."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from training_job import calibration, training_run
from training_job.calibration import HeadInputs, out_of_fold_logits
from training_job.evaluation import flagged, thresholds_for_review_rate

CLASSES, DIMENSIONS = 4, 24
SMOOTHING = 0.1


def clustered(rng: np.random.Generator, centres: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Features around one centre per class, overlapping enough that some images are ambiguous."""
    labels = np.arange(count) % CLASSES
    return (centres[labels] + rng.normal(0.0, 1.0, (count, DIMENSIONS))).astype(np.float32), labels


@pytest.fixture(scope="module")
def synthetic() -> dict[str, np.ndarray | HeadInputs]:
    rng = np.random.default_rng(21)
    centres = rng.normal(0.0, 0.9, (CLASSES, DIMENSIONS))
    train, train_labels = clustered(rng, centres, 300)
    val, val_labels = clustered(rng, centres, 17)
    unseen, _ = clustered(rng, centres, 4000)
    inputs = HeadInputs(train, train_labels, np.ones(len(train_labels), np.float32), val, val_labels)
    return {"inputs": inputs, "unseen": unseen}


@pytest.fixture(scope="module")
def head(synthetic) -> keras.layers.Dense:
    """The 'trained model's' head: fitted on every training image, with a shift of all logits that the loss
    cannot see (as a trained head has one)."""
    inputs = synthetic["inputs"]
    targets = calibration._soft_targets(inputs.train_labels, CLASSES, SMOOTHING)
    kernel, bias = calibration._fitted_head(inputs.train_features, targets, inputs.train_weights, 0.01)
    layer = keras.layers.Dense(CLASSES)
    layer.build((None, DIMENSIONS))
    layer.set_weights([kernel + 0.3, bias + 2.0])
    return layer


def test_every_training_image_is_scored_by_a_head_fitted_without_it(synthetic, head, monkeypatch) -> None:
    inputs = synthetic["inputs"]
    fitted_with: list[set[bytes]] = []

    def tagged_head(features, targets, weights, l2, start=None):
        """A head that scores every image with its own call number: logit 0 minus logit 1."""
        fitted_with.append({row.astype(np.float32).tobytes() for row in features})
        return np.zeros((features.shape[1], CLASSES)), np.eye(CLASSES)[0] * (len(fitted_with) - 1)

    monkeypatch.setattr(calibration, "_fitted_head", tagged_head)
    logits = out_of_fold_logits(inputs, head, SMOOTHING)

    scored_by = np.rint(logits[:, 0] - logits[:, 1]).astype(int)
    fold_calls = set(range(len(fitted_with) - calibration.FOLDS, len(fitted_with)))
    assert set(scored_by.tolist()) == fold_calls
    for row, call in zip(inputs.train_features, scored_by, strict=True):
        assert row.tobytes() not in fitted_with[call]


def test_out_of_fold_logits_classify_and_keep_the_final_heads_mean_logit(synthetic, head) -> None:
    inputs = synthetic["inputs"]

    logits = out_of_fold_logits(inputs, head, SMOOTHING)

    assert logits.shape == (len(inputs.train_labels), CLASSES) and np.isfinite(logits).all()
    assert np.mean(logits.argmax(axis=1) == inputs.train_labels) >= 0.8
    kernel, bias = head.get_weights()
    np.testing.assert_allclose(logits.mean(axis=1), (inputs.train_features @ kernel + bias).mean(axis=1), atol=1e-4)


def test_thresholds_from_a_small_val_set_plus_out_of_fold_scores_cost_the_review_rate_on_unseen_images(
        synthetic, head) -> None:
    inputs = synthetic["inputs"]
    kernel, bias = head.get_weights()
    calibration_logits = np.concatenate([inputs.val_features @ kernel + bias,
                                         out_of_fold_logits(inputs, head, SMOOTHING)])

    thresholds = thresholds_for_review_rate(calibration_logits, 0.05)

    assert 0.05 - 2 / len(calibration_logits) <= np.mean(flagged(calibration_logits, thresholds)) <= 0.05
    unseen = synthetic["unseen"] @ kernel + bias
    assert np.mean(flagged(unseen, thresholds)) == pytest.approx(0.05, abs=0.02)


def test_too_few_images_for_two_folds_give_no_rows(synthetic, head) -> None:
    inputs = synthetic["inputs"]
    first = slice(0, CLASSES)  # one image of each class
    one_each = HeadInputs(inputs.train_features[first], inputs.train_labels[first], inputs.train_weights[first],
                          inputs.val_features, inputs.val_labels)

    assert out_of_fold_logits(one_each, head, SMOOTHING).shape == (0, CLASSES)


@pytest.mark.parametrize(("val_images", "out_of_fold_rows"), [(training_run.VAL_ENOUGH - 1, 300),
                                                             (training_run.VAL_ENOUGH, 0)])
def test_out_of_fold_scores_join_the_calibration_only_while_the_val_split_is_small(
        monkeypatch, val_images: int, out_of_fold_rows: int) -> None:
    monkeypatch.setattr(training_run, "predict_logits", lambda model, uris, *a, **k: np.zeros((len(uris), CLASSES)))
    monkeypatch.setattr(training_run, "out_of_fold_logits", lambda *a, **k: np.ones((300, CLASSES)))
    monkeypatch.setattr(training_run, "head_layer", lambda model: None)
    trained = SimpleNamespace(model=None, head_inputs=object(), config=SimpleNamespace(label_smoothing=0.1, seed=0))

    val, out_of_fold = training_run.calibration_logits(trained, [f"v{i}" for i in range(val_images)], None)

    assert len(val) == val_images and len(out_of_fold) == out_of_fold_rows
