"""The cache core (resilient/_core/cache.py): policy validation, what is stored, and `judge`."""

from __future__ import annotations

import math
from datetime import timedelta

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import bad_numbers, durations, seconds, seconds_of

from resilient._core.cache import CachePolicy, Freshness, judge

# How many evenly spaced draws the distribution tests take: the share of EARLY verdicts among
# them is within 1/GRID of the exact XFetch probability.
GRID = 10_000


def uniform_grid(size: int = GRID) -> list[float]:
    """Draws spread evenly over (0, 1]: the quantiles of the uniform distribution."""
    return [(i + 0.5) / size for i in range(size)]


def early_share(policy: CachePolicy, fresh_left: float, delta: float) -> float:
    """The share of evenly spaced draws for which *judge* starts an early refresh."""
    left = fresh_left + policy.stale_ttl
    verdicts = [judge(policy, left, delta, draw) for draw in uniform_grid()]
    assert Freshness.STALE not in verdicts
    return verdicts.count(Freshness.EARLY) / GRID


def positive_durations() -> st.SearchStrategy[float | int | timedelta]:
    """Durations a ttl may be: more than zero seconds."""
    return durations().filter(lambda value: seconds_of(value) > 0)


def draws() -> st.SearchStrategy[float]:
    """Uniform draws as judge takes them: in (0, 1]."""
    return st.floats(min_value=0.0, max_value=1.0, exclude_min=True)


# --- validation at construction ----------------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, 0.0, -1, -0.5, timedelta(0), timedelta(seconds=-3)])
def test_ttl_must_be_positive(ttl: object) -> None:
    """A ttl of zero or less is a ValueError that names ttl= and asks for more than zero."""
    with pytest.raises(ValueError, match=r"ttl=.* must be more than zero seconds"):
        CachePolicy(ttl=ttl)


@pytest.mark.parametrize("ttl", ["60", None, True, [60]])
def test_ttl_must_be_a_duration(ttl: object) -> None:
    """A ttl that is no number or timedelta is a TypeError showing how to write one."""
    with pytest.raises(TypeError, match=r"ttl=.* is not a duration: .*e\.g\. ttl=0\.5"):
        CachePolicy(ttl=ttl)


@pytest.mark.parametrize("ttl", [math.nan, math.inf])
def test_ttl_must_be_finite(ttl: float) -> None:
    """NaN and infinite ttl values are refused: a value fresh forever is not a cache."""
    with pytest.raises(ValueError, match=r"ttl=.* is not a finite duration"):
        CachePolicy(ttl=ttl)


@given(value=bad_numbers())
def test_negative_stale_ttl_is_refused(value: float) -> None:
    """A negative, NaN or infinite stale_ttl is a ValueError naming stale_ttl=."""
    with pytest.raises(ValueError, match="stale_ttl="):
        CachePolicy(ttl=1, stale_ttl=value)


@pytest.mark.parametrize("maxsize", [0, -1, True, False, 1.5, "10", None])
def test_maxsize_must_be_a_positive_int(maxsize: object) -> None:
    """maxsize of 0, a negative number, a bool or a non-int is refused with an example."""
    with pytest.raises(ValueError, match=r"maxsize must be a positive int, e\.g\. maxsize=1024"):
        CachePolicy(ttl=1, maxsize=maxsize)


@pytest.mark.parametrize("tags", ["users", b"users", [1], ["users", None], 7])
def test_tags_must_be_a_list_of_strings(tags: object) -> None:
    """tags given as a bare string (or holding non-strings) is a TypeError showing a list."""
    with pytest.raises(
        TypeError, match=r"tags=.* must be a list of strings, e\.g\. tags=\['users'"
    ):
        CachePolicy(ttl=1, tags=tags)


def test_tags_are_kept_as_a_tuple() -> None:
    """Tags given as a list are stored as an immutable tuple, in order."""
    assert CachePolicy(ttl=1, tags=["users", "user:{user_id}"]).tags == ("users", "user:{user_id}")


@pytest.mark.parametrize("key", [42, 1.5, b"{user_id}", ["user_id"]])
def test_key_must_be_a_template_or_a_callable(key: object) -> None:
    """key= of another type is a TypeError that shows a template and says callables work."""
    with pytest.raises(TypeError, match=r"key=.* must be a template string such as '\{user_id\}'"):
        CachePolicy(ttl=1, key=key)


@pytest.mark.parametrize("condition", [5, "truthy", True])
def test_condition_must_be_callable(condition: object) -> None:
    """A condition that cannot be called with the result is refused at construction."""
    with pytest.raises(TypeError, match=r"condition=.* must be a callable taking the result"):
        CachePolicy(ttl=1, condition=condition)


def test_cache_none_must_be_a_bool() -> None:
    """cache_none takes True or False, not a truthy string."""
    with pytest.raises(TypeError, match="cache_none"):
        CachePolicy(ttl=1, cache_none="no")  # type: ignore[arg-type]  # wrong on purpose


@pytest.mark.parametrize("lease_ttl", [0, -2])
def test_lease_ttl_must_be_positive(lease_ttl: float) -> None:
    """A lease of zero seconds or less would free a key before anyone computed it."""
    with pytest.raises(ValueError, match=r"lease_ttl=.* must be more than zero seconds"):
        CachePolicy(ttl=1, lease_ttl=lease_ttl)


@pytest.mark.parametrize("early_refresh", [-0.1, math.inf, math.nan])
def test_early_refresh_must_be_a_non_negative_number(early_refresh: float) -> None:
    """early_refresh is XFetch's beta: zero or more, finite."""
    with pytest.raises(ValueError, match="early_refresh="):
        CachePolicy(ttl=1, early_refresh=early_refresh)


def test_policy_is_frozen_and_keyword_only() -> None:
    """A policy cannot be changed after construction, nor built from positional arguments."""
    policy = CachePolicy(ttl=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.ttl = 2  # type: ignore[misc]  # assigning on purpose
    with pytest.raises(TypeError):
        CachePolicy(1)  # type: ignore[call-arg]  # positional on purpose


def test_evolve_validates_the_new_fields() -> None:
    """attrs.evolve derives a variant, and validates what it changes."""
    policy = CachePolicy(ttl=60, stale_ttl=30)
    assert attrs.evolve(policy, ttl=5) == CachePolicy(ttl=5, stale_ttl=30)
    with pytest.raises(ValueError, match="ttl="):
        attrs.evolve(policy, ttl=0)


# --- normalised fields -------------------------------------------------------------------------


@given(ttl=positive_durations(), stale_ttl=durations())
def test_durations_are_normalised_to_seconds(
    ttl: float | timedelta, stale_ttl: float | timedelta
) -> None:
    """ttl and stale_ttl accept float, int or timedelta and store float seconds."""
    policy = CachePolicy(ttl=ttl, stale_ttl=stale_ttl)
    assert policy.ttl == seconds_of(ttl)
    assert policy.stale_ttl == seconds_of(stale_ttl)
    assert type(policy.ttl) is float
    assert type(policy.stale_ttl) is float


@given(ttl=seconds(min_value=1e-3), stale_ttl=seconds())
def test_stored_ttl_is_fresh_then_stale_time(ttl: float, stale_ttl: float) -> None:
    """An entry lives in the backend for ttl + stale_ttl seconds."""
    assert CachePolicy(ttl=ttl, stale_ttl=stale_ttl).stored_ttl == ttl + stale_ttl


def test_defaults() -> None:
    """By default: 1024 values, no stale serving, early refresh on, None cached, 10 s lease."""
    policy = CachePolicy(ttl=60)
    assert (policy.maxsize, policy.stale_ttl, policy.early_refresh) == (1024, 0.0, 1.0)
    assert (policy.key, policy.condition, policy.cache_none, policy.tags) == (None, None, True, ())
    assert (policy.lease_ttl, policy.backend, policy.name) == (10.0, None, None)


# --- what is stored ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, "", [], {}, False, 12, "x"])
def test_every_value_is_stored_by_default(value: object) -> None:
    """Falsy results are stored like any other: only the options below leave a value out."""
    assert CachePolicy(ttl=1).stores(value)


def test_none_is_stored_unless_cache_none_is_false() -> None:
    """A None result is stored by default, and not with cache_none=False."""
    assert CachePolicy(ttl=1).stores(None)
    assert not CachePolicy(ttl=1, cache_none=False).stores(None)
    assert CachePolicy(ttl=1, cache_none=False).stores(0)


def test_condition_decides_what_is_stored() -> None:
    """Only results the condition accepts are stored; its truthiness counts, not its type."""
    policy = CachePolicy(ttl=1, condition=lambda value: value)
    assert policy.stores([1])
    assert not policy.stores([])


def test_cache_none_false_wins_over_condition() -> None:
    """With cache_none=False, None is not stored even if the condition accepts it."""
    seen: list[object] = []

    def condition(value: object) -> bool:
        seen.append(value)
        return True

    policy = CachePolicy(ttl=1, cache_none=False, condition=condition)
    assert not policy.stores(None)
    assert policy.stores(1)
    assert seen == [1]


# --- judge: fresh and stale --------------------------------------------------------------------


def test_fresh_until_stale_ttl_is_all_that_is_left() -> None:
    """An entry is fresh while more than stale_ttl of its life is left, stale from then on."""
    policy = CachePolicy(ttl=10, stale_ttl=5, early_refresh=0)
    assert judge(policy, 15.0, 0.0, 0.5) is Freshness.FRESH
    assert judge(policy, 5.000001, 0.0, 0.5) is Freshness.FRESH
    assert judge(policy, 5.0, 0.0, 0.5) is Freshness.STALE
    assert judge(policy, 0.001, 0.0, 0.5) is Freshness.STALE


def test_without_stale_ttl_an_entry_with_time_left_is_fresh() -> None:
    """With stale_ttl=0 every entry the backend still holds is fresh."""
    policy = CachePolicy(ttl=10, early_refresh=0)
    assert judge(policy, 1e-9, 0.0, 0.5) is Freshness.FRESH
    assert judge(policy, 0.0, 0.0, 0.5) is Freshness.STALE


@given(
    ttl=seconds(min_value=1e-3, max_value=1e5),
    stale_ttl=seconds(max_value=1e5),
    left=seconds(max_value=2e5),
    delta=seconds(max_value=1e3),
    draw=draws(),
)
def test_stale_exactly_when_fresh_time_is_used_up(
    ttl: float, stale_ttl: float, left: float, delta: float, draw: float
) -> None:
    """The verdict is STALE if and only if no more than stale_ttl seconds are left."""
    policy = CachePolicy(ttl=ttl, stale_ttl=stale_ttl)
    verdict = judge(policy, left, delta, draw)
    assert (verdict is Freshness.STALE) == (left - stale_ttl <= 0)


# --- judge: probabilistic early refresh --------------------------------------------------------


@given(
    left=seconds(min_value=1e-6, max_value=1e5),
    delta=seconds(max_value=1e5),
    draw=draws(),
)
def test_never_early_when_early_refresh_is_zero(left: float, delta: float, draw: float) -> None:
    """early_refresh=0 turns early refresh off: a fresh entry is always plainly FRESH."""
    assert judge(CachePolicy(ttl=1, early_refresh=0), left, delta, draw) is Freshness.FRESH


@given(left=seconds(min_value=1e-6, max_value=1e5), draw=draws(), beta=seconds(max_value=100))
def test_never_early_for_a_value_that_cost_nothing(left: float, draw: float, beta: float) -> None:
    """A value computed in no time is never refreshed early: recomputing it on expiry is free."""
    assert judge(CachePolicy(ttl=1, early_refresh=beta), left, 0.0, draw) is Freshness.FRESH


@given(
    delta=seconds(min_value=1e-3, max_value=100),
    beta=seconds(min_value=0.1, max_value=10),
    draw=draws(),
    near=seconds(min_value=1e-6, max_value=1e4),
    far=seconds(min_value=1e-6, max_value=1e4),
)
def test_early_refresh_is_more_likely_nearer_expiry(
    delta: float, beta: float, draw: float, near: float, far: float
) -> None:
    """For one draw, an entry refreshed early at some time left is refreshed early at less."""
    assume(near < far)
    policy = CachePolicy(ttl=1, early_refresh=beta)
    if judge(policy, far, delta, draw) is Freshness.EARLY:
        assert judge(policy, near, delta, draw) is Freshness.EARLY


@pytest.mark.parametrize(
    ("fresh_left", "delta", "beta"),
    [(10.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.1, 1.0, 1.0), (5.0, 0.5, 2.0), (0.01, 2.0, 0.5)],
)
def test_early_refresh_follows_the_xfetch_distribution(
    fresh_left: float, delta: float, beta: float
) -> None:
    """The chance of an early refresh is exp(-fresh_left / (delta * beta)), as XFetch says."""
    policy = CachePolicy(ttl=100, stale_ttl=3, early_refresh=beta)
    expected = math.exp(-fresh_left / (delta * beta))
    assert early_share(policy, fresh_left, delta) == pytest.approx(expected, abs=1 / GRID)


def test_early_refresh_probability_rises_as_expiry_nears() -> None:
    """Further from expiry an early refresh is rare; right before expiry it is near certain."""
    policy = CachePolicy(ttl=100)
    shares = [early_share(policy, left, 1.0) for left in (20.0, 5.0, 2.0, 1.0, 0.5, 0.01)]
    assert shares == sorted(shares)
    assert shares[0] == 0.0
    assert shares[-1] > 0.98


def test_costlier_values_are_refreshed_earlier() -> None:
    """At the same time left, a value that took longer to compute is likelier to refresh."""
    policy = CachePolicy(ttl=100)
    assert (
        early_share(policy, 2.0, 0.5)
        < early_share(policy, 2.0, 1.0)
        < early_share(policy, 2.0, 4.0)
    )


@given(
    delta=seconds(max_value=1e3),
    beta=seconds(max_value=10),
    beyond=seconds(min_value=1e-6, max_value=1e5),
    draw=st.floats(min_value=math.exp(-12) * 1.0001, max_value=1.0),
)
def test_beyond_the_horizon_an_entry_is_plainly_fresh(
    delta: float, beta: float, beyond: float, draw: float
) -> None:
    """More than early_horizon(delta) before expiry, only a one-in-160,000 draw is EARLY."""
    policy = CachePolicy(ttl=1, early_refresh=beta)
    fresh_left = policy.early_horizon(delta) + beyond
    assert judge(policy, fresh_left, delta, draw) is Freshness.FRESH


@given(delta=seconds(max_value=1e3), beta=seconds(max_value=10))
def test_early_horizon_scales_with_cost_and_eagerness(delta: float, beta: float) -> None:
    """The horizon is proportional to delta and beta, and zero when either is."""
    horizon = CachePolicy(ttl=1, early_refresh=beta).early_horizon(delta)
    assert horizon == pytest.approx(12 * delta * beta)
    if delta == 0 or beta == 0:
        assert horizon == 0
