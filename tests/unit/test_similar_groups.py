"""The queue's grouping puts near-identical embeddings together and keeps distinct ones and model versions apart."""

from __future__ import annotations

import numpy as np

from review_ui.similar_groups import _cluster, group_embeddings


def _near(centre: list[float], count: int, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    return np.array(centre) + rng.normal(0, noise, size=(count, len(centre)))


def test_near_identical_embeddings_share_a_group_and_distinct_ones_do_not() -> None:
    rng = np.random.default_rng(0)
    red, green, grey = _near([0.86, 0.08, 0.08], 6, rng), _near([0.08, 0.86, 0.08], 4, rng), _near([0.5] * 3, 3, rng)
    labels = group_embeddings(np.vstack([red, green, grey]), distance=0.1)
    assert len(set(labels[:6])) == 1 and len(set(labels[6:10])) == 1 and len(set(labels[10:])) == 1
    assert len({labels[0], labels[6], labels[10]}) == 3


def test_grouping_ignores_scale_and_survives_an_all_zero_embedding() -> None:
    base = np.array([3.0, 1.0, 0.5, 0.0])
    labels = group_embeddings(np.vstack([base, base * 10, base * 0.1, np.zeros(4)]), distance=0.05)
    assert labels[0] == labels[1] == labels[2] != labels[3]


def test_one_embedding_is_a_group_of_its_own() -> None:
    assert list(group_embeddings(np.ones((1, 8)), distance=0.2)) == [0]


def test_groups_come_largest_first_keep_queue_order_and_never_mix_model_versions() -> None:
    same = [1.0, 0.0, 0.0]
    ranked = [(10, "m-1", same), (11, "m-2", same), (12, "m-1", [0.0, 1.0, 0.0]), (13, "m-1", same),
              (14, "m-2", [0.0, 0.0, 1.0, 0.0])]
    groups = _cluster(ranked, distance=0.1)
    assert [(g.model_version, g.item_ids) for g in groups] == [
        ("m-1", (10, 13)), ("m-2", (11,)), ("m-1", (12,)), ("m-2", (14,))]
