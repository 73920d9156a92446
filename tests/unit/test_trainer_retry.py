"""Which failed training runs are tried again: a passing failure always, and it uses up no attempt."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from training_job.service import may_retry

DATABASE_DOWN = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_a_passing_failure_is_tried_again_however_many_attempts_were_used() -> None:
    assert may_retry(DATABASE_DOWN, attempts_used=0, max_attempts=3)
    assert may_retry(DATABASE_DOWN, attempts_used=7, max_attempts=3)


def test_another_failure_is_tried_again_only_while_counted_attempts_remain() -> None:
    assert [may_retry(RuntimeError("out of memory"), used, 3) for used in range(4)] == [True, True, False, False]


def test_a_bad_dataset_fails_for_good_at_once() -> None:
    assert not may_retry(ValueError("manifest checksum differs"), attempts_used=0, max_attempts=3)
