"""Enough in-distribution images to calibrate the OOD thresholds on when the val split is small: the val split,
plus every training image scored out of fold (training_run.VAL_ENOUGH says when val alone is enough).

Out of fold: the trained model's penultimate features of the training images (plain view) are split into k
stratified folds; for each fold a fresh linear head learns from the other folds and scores the held-out one, so no
image is scored by a head that saw it. The fine-tuned top blocks below the head did see every training image, which
is why the val split, scored by the final model, is part of the calibration set too.

The fresh heads minimise the training's loss (label-smoothed softmax cross-entropy with the training's sample
weights) with L-BFGS and an L2 penalty; its strength is the one whose head, fitted on all training images, has the
lowest val loss, as the head phase's early stopping keeps the epoch with the lowest val loss. All heads of 2,000
TrashNet images take about half a minute on two busy cores.

Softmax cross-entropy cannot see a shift of all of an image's logits, but the energy can: each out-of-fold row keeps
the fresh head's logits about their mean and takes the final head's mean logit of that image, so the energies are on
the scale of the model that serves.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from scipy.optimize import minimize
from scipy.special import logsumexp
from sklearn.model_selection import StratifiedKFold

from training_job.classifier import ModelParts

FOLDS = 5
L2_STRENGTHS = (0.01, 0.001)  # of the head's penalty, per unit of mean loss
MAX_ITERATIONS = 100  # of L-BFGS per head: enough for the thresholds (tested on TrashNet), a few seconds a head
FEATURE_BATCH_SIZE = 256
Head = tuple[np.ndarray, np.ndarray]  # a linear head: (kernel (d, classes), bias (classes,))


@dataclass(frozen=True)
class HeadInputs:
    """What the head of a trained model reads, for the images it was trained and stopped on."""

    train_features: np.ndarray  # (train images, d): penultimate features of the plain view, in the split's order
    train_labels: np.ndarray  # (train images,) class indices
    train_weights: np.ndarray  # (train images,) the loss weights of the training
    val_features: np.ndarray  # (val images, d)
    val_labels: np.ndarray  # (val images,)


def penultimate_features(parts: ModelParts, activations: np.ndarray) -> np.ndarray:
    """The features the head of ``parts``' classifier reads, computed from cached activations at the cut."""
    cut, pooled = parts.frozen.outputs  # the classifier's own tensors (``top``'s input is a copy of the cut)
    features = keras.Model(cut, pooled)
    step = tf.function(lambda batch: features(batch, training=False), reduce_retracing=True)
    return np.concatenate([np.asarray(step(tf.cast(activations[start:start + FEATURE_BATCH_SIZE], tf.float32)))
                           for start in range(0, len(activations), FEATURE_BATCH_SIZE)])


def _soft_targets(labels: np.ndarray, num_classes: int, label_smoothing: float) -> np.ndarray:
    return (1.0 - label_smoothing) * np.eye(num_classes)[labels] + label_smoothing / num_classes


def _loss(head: Head, features: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy of the head's softmax against (soft) targets."""
    logits = features @ head[0] + head[1]
    return float(-(targets * (logits - logsumexp(logits, axis=1, keepdims=True))).sum(axis=1).mean())


def _fitted_head(features: np.ndarray, targets: np.ndarray, weights: np.ndarray, l2: float,
                 start: Head | None = None) -> Head:
    """The linear head minimising the weighted cross-entropy against ``targets`` plus ``l2`` / 2 * |kernel|^2."""
    dimensions, num_classes = features.shape[1], targets.shape[1]
    shares = (weights / weights.sum())[:, np.newaxis].astype(features.dtype)

    def objective(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        kernel = parameters[:-num_classes].reshape(dimensions, num_classes).astype(features.dtype)
        logits = features @ kernel + parameters[-num_classes:].astype(features.dtype)
        log_probabilities = logits - logsumexp(logits, axis=1, keepdims=True)
        residual = shares * (np.exp(log_probabilities) - targets)  # the gradient at the logits (targets sum to 1)
        loss = -(shares * targets * log_probabilities).sum() + l2 / 2 * (kernel ** 2).sum()
        gradient = np.concatenate([(features.T @ residual + l2 * kernel).ravel(), residual.sum(axis=0)])
        return float(loss), gradient.astype(np.float64)

    initial = (np.zeros(dimensions * num_classes + num_classes) if start is None
               else np.concatenate([start[0].ravel(), start[1]]))
    parameters = minimize(objective, initial, jac=True, method="L-BFGS-B", options={"maxiter": MAX_ITERATIONS}).x
    return parameters[:-num_classes].reshape(dimensions, num_classes), parameters[-num_classes:]


def _penalty(inputs: HeadInputs, features: np.ndarray, targets: np.ndarray, label_smoothing: float) -> float:
    """The L2 strength whose head, fitted on every training image, has the lowest val loss."""
    val_targets = _soft_targets(inputs.val_labels, targets.shape[1], label_smoothing)
    best, lowest, head = L2_STRENGTHS[0], np.inf, None
    for l2 in L2_STRENGTHS:  # strongest first, each fit starting from the last one's head
        head = _fitted_head(features, targets, inputs.train_weights, l2, head)
        loss = _loss(head, inputs.val_features, val_targets)
        if loss < lowest:
            best, lowest = l2, loss
    return best


def out_of_fold_logits(inputs: HeadInputs, head: keras.layers.Dense, label_smoothing: float, folds: int = FOLDS,
                       seed: int = 0) -> np.ndarray:
    """(train images, classes) logits of the training images, each from a head fitted without its fold.

    ``head`` is the trained model's Dense head: it gives each image its mean logit (see the module docstring).
    With fewer than two images in every class there are no folds to make, and no rows come back.
    """
    kernel, bias = head.get_weights()
    num_classes = int(bias.shape[0])
    folds = min(folds, int(np.bincount(inputs.train_labels).max()))
    if folds < 2:
        return np.zeros((0, num_classes))
    # float32 as the model computes: the fits' matrix products take half the time of float64 ones.
    features = inputs.train_features.astype(np.float32)
    targets = _soft_targets(inputs.train_labels, num_classes, label_smoothing).astype(np.float32)
    l2 = _penalty(inputs, features, targets, label_smoothing)
    # A class with fewer images than folds is missing from some folds' fits: those of its images are scored by a
    # head that never saw the class, as an unseen image of a new class would be.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, inputs.train_labels))
    logits = np.zeros((len(features), num_classes))
    for fitted, held_out in splits:
        fold_kernel, fold_bias = _fitted_head(features[fitted], targets[fitted], inputs.train_weights[fitted], l2)
        fold_logits = features[held_out] @ fold_kernel + fold_bias
        logits[held_out] = fold_logits - fold_logits.mean(axis=1, keepdims=True)
    return logits + (features @ kernel + bias).mean(axis=1, keepdims=True)
