"""The limits of PROTOCOL 3.7 (chat.limits), without a server."""

from typing import Any

import pytest
from marshmallow import ValidationError

from chat.limits import MAX_INT, MAX_METADATA_BYTES, MAX_METADATA_DEPTH, check_metadata, counter_range


def nested(depth: int, *, arrays: bool = False) -> dict[str, Any]:
    """A metadata object `depth` levels deep (itself level 1), objects or objects in arrays."""
    value: Any = {}
    for level in range(depth - 1, 1, -1):  # the innermost container is level `depth`; level 1 is an object
        value = [value] if arrays and level % 2 == 0 else {"a": value}
    return value if depth == 1 else {"a": value}


def test_nested_builds_the_depth_it_names():
    assert nested(1) == {} and nested(2) == {"a": {}} and nested(3, arrays=True) == {"a": [{}]}
    assert nested(4, arrays=True) == {"a": [{"a": {}}]}


@pytest.mark.parametrize("arrays", [False, True])
def test_metadata_up_to_eight_levels_is_accepted(arrays):
    for depth in range(1, MAX_METADATA_DEPTH + 1):
        check_metadata(nested(depth, arrays=arrays))


@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 251, 252, 253, 254, 2000])
@pytest.mark.parametrize("arrays", [False, True])
def test_deeper_metadata_is_refused(depth, arrays):
    with pytest.raises(ValidationError, match="deeper than 8 levels"):
        check_metadata(nested(depth, arrays=arrays))


def test_scalars_do_not_count_as_levels():
    check_metadata({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1, "s": "x", "n": None, "t": True}}}}}}}})


def test_deep_branch_beside_shallow_ones_is_found():
    with pytest.raises(ValidationError):
        check_metadata({"x": 1, "y": [1, 2, {"z": "ok"}], "deep": nested(MAX_METADATA_DEPTH)})


def test_metadata_size_is_bounded_at_16_kib_as_json():
    exact = {"x": "a" * (MAX_METADATA_BYTES - len('{"x":""}'))}
    check_metadata(exact)
    with pytest.raises(ValidationError, match="16384 bytes"):
        check_metadata({"x": exact["x"] + "a"})


def test_counter_range_is_within_0_and_2_to_the_31_minus_1():
    check = counter_range()
    assert check(0) == 0 and check(MAX_INT) == MAX_INT
    for bad in (-1, MAX_INT + 1, 2**63):
        with pytest.raises(ValidationError):
            check(bad)
    assert counter_range(10**12).max == MAX_INT  # a larger maximum is still capped
    limit = counter_range(1000, minimum=1)
    for bad in (0, 1001):
        with pytest.raises(ValidationError):
            limit(bad)
