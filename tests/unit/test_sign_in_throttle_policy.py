"""How long failed sign-ins lock a key: the window, doubled for each further round of failures, capped."""

from __future__ import annotations

import pytest

from review_ui.sign_in_throttle import Refusal, ThrottlePolicy, account_key

POLICY = ThrottlePolicy(account_limit=10, client_limit=50, window_s=900, max_lock_s=4 * 3600, concurrency=2)


def test_the_first_round_of_failures_locks_for_the_window() -> None:
    assert POLICY.lock_s(10, 10) == 900
    assert POLICY.lock_s(19, 10) == 900


def test_every_further_round_doubles_the_lock_up_to_the_cap() -> None:
    assert [POLICY.lock_s(n, 10) for n in (20, 30, 40, 50, 60)] == [1800, 3600, 7200, 14400, 14400]
    assert POLICY.lock_s(10**9, 10) == 14400


@pytest.mark.parametrize(("changes", "message"), [
    ({"account_limit": 0}, "WASTEX_UI_SIGNIN_MAX_FAILURES must be above 0"),
    ({"concurrency": 0}, "WASTEX_UI_SIGNIN_CONCURRENCY must be above 0"),
    ({"max_lock_s": 60}, "WASTEX_UI_SIGNIN_MAX_LOCK_S .* must be at least WASTEX_UI_SIGNIN_WINDOW_S"),
])
def test_an_unusable_policy_names_its_setting(changes: dict, message: str) -> None:
    values = {"account_limit": 10, "client_limit": 50, "window_s": 900, "max_lock_s": 3600, "concurrency": 2}
    with pytest.raises(ValueError, match=message):
        ThrottlePolicy(**{**values, **changes})


def test_accounts_are_counted_by_their_name_lower_cased_and_cut_to_the_column() -> None:
    assert account_key("Alice") == "alice"
    assert len(account_key("x" * 500)) == 64


def test_a_refusal_says_what_is_locked_and_for_how_long() -> None:
    assert Refusal(42, "account").message == "too many failed sign-ins for this account: try again in 42 s"
    assert "from this address" in Refusal(3, "address").message
