"""Policy parameter checks that need no policy instance: value types against the defaults, k against N.

Policies check their own value ranges in ``__init__``; these checks catch what a constructor would only
trip over deep inside (``'<' not supported between 'str' and 'int'``, a float ``k`` used as a slice) and
the one range that depends on the data: a neighbour count ``k`` must be smaller than the number of samples.
"""

from __future__ import annotations

from collections.abc import Mapping

from streamlabel.config.limits import MAX_NEIGHBOURS
from streamlabel.config.value_types import expected_like

# parameters that count neighbours of a sample among the N samples of the bank
NEIGHBOUR_COUNTS = ("k", "link_k", "k1", "k2")


# other size parameters of the built-in policies: (largest value, what each unit costs)
SIZE_LIMITS: dict[str, tuple[int, str]] = {
    "knn_slack": (MAX_NEIGHBOURS, "extra k-NN candidates per sample: N x (k + knn_slack) entries"),
    "max_anchors": (MAX_NEIGHBOURS, "anchors per cluster"),
    "num_levels": (64, "one label level and k-NN graph per level"),
    "num_parts": (64, "one feature bank of N rows per part"),
    "knn_projection": (65536, "a projected copy of the bank, N x knn_projection"),
}


def neighbour_bound_error(name: str, key: str, value: object) -> str | None:
    """Why a neighbour count or another size parameter is too large whatever N is (None when it is not): the
    k-NN graph holds N x k entries, so k = 10**6 on a million rows is terabytes; the papers use 20-30."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if key in NEIGHBOUR_COUNTS and value > MAX_NEIGHBOURS:
        return (f"parameter '{key}' of policy {name!r} is {value:,}; neighbour counts above {MAX_NEIGHBOURS:,} are "
                f"refused (the k-NN graph holds N x {key} entries; typical values are 10-30)")
    if key in SIZE_LIMITS and value > SIZE_LIMITS[key][0]:
        limit, cost = SIZE_LIMITS[key]
        return f"parameter '{key}' of policy {name!r} is {value:,}; values above {limit:,} are refused ({cost})"
    return None


def parameter_type_error(name: str, key: str, value: object, default: object) -> str | None:
    """Why ``value`` cannot stand for a parameter whose default is ``default`` (None when it can)."""
    too_big = neighbour_bound_error(name, key, value)
    if too_big:
        return too_big
    if default is None or isinstance(default, (list, tuple, dict)):
        return None  # free-form: the policy checks it
    expected = expected_like(value, default)
    if expected is None:
        return None
    return f"parameter '{key}' of policy {name!r} must be {expected}, got {type(value).__name__} {value!r}"


def check_parameter_types(name: str, params: Mapping[str, object], defaults: Mapping[str, object]) -> None:
    """Raise TypeError naming the first parameter whose value type does not match its default."""
    for key, value in params.items():
        if key in defaults:
            problem = parameter_type_error(name, key, value, defaults[key])
            if problem:
                raise TypeError(problem)


def check_fits_samples(name: str, params: Mapping[str, object], num_samples: int) -> None:
    """Raise ValueError when a neighbour count is not below the number of samples N."""
    for key, value in params.items():
        too_big = neighbour_bound_error(name, key, value)
        if too_big:
            raise ValueError(too_big)
    for key in NEIGHBOUR_COUNTS:
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= num_samples:
            raise ValueError(f"parameter '{key}' of policy {name!r} is {value} but there are only {num_samples} "
                             f"samples: {key} counts neighbours of a sample and must be < N = {num_samples}")


def dry_run_error(name: str, params: Mapping[str, object]) -> str | None:
    """The ValueError/TypeError a policy's constructor raises for ``params`` (None if it accepts them).

    The policy is built on the ``meta`` device, so no bank memory is allocated; N is taken just above every
    integer parameter so no N-dependent check fires (those are ``check_fits_samples``'s, once N is known).
    Other exceptions (an operation the meta device lacks) say nothing about the parameters and are ignored.
    """
    from streamlabel.methods.base import get_policy_class

    counts = [v for v in params.values() if isinstance(v, int) and not isinstance(v, bool)]
    num_samples = min(1_000_000, max([2, *(c + 1 for c in counts)]))
    try:
        get_policy_class(name)(num_samples, 1, device="meta", **params)
    except (ValueError, TypeError) as err:
        return str(err)
    except Exception:  # noqa: BLE001 - not a verdict on the parameters
        return None
    return None
