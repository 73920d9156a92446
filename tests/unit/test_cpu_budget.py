"""Thread counts follow the cores the process may run on, not the machine's count."""

from __future__ import annotations

import os

import pytest

from infra.cpu_budget import thread_budget, usable_cores

pytestmark = pytest.mark.unit


def test_the_usable_cores_are_the_affinity_set_of_the_process() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("cores", "model", "decode"), [(1, 1, 1), (2, 2, 1), (3, 3, 1), (8, 8, 4)])
def test_the_model_gets_every_core_and_decoding_half_of_them(cores: int, model: int, decode: int) -> None:
    budget = thread_budget(cores=cores)
    assert (budget.model, budget.decode) == (model, decode)


def test_settings_override_either_count() -> None:
    budget = thread_budget(model_threads=1, decode_threads=3, cores=2)
    assert (budget.model, budget.decode) == (1, 3)
