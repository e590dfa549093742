import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from biowm.core.errors import InvalidInputError
from biowm.core.space import Channel, Space

SPACE = Space.of(
    Channel("glucose_mg_dl", "mg/dL", 20.0, 600.0),
    Channel("insulin_u_per_min", "U/min", 0.0, 30.0),
)


def test_names_units_and_index():
    assert SPACE.names == ["glucose_mg_dl", "insulin_u_per_min"]
    assert SPACE.units == ["mg/dL", "U/min"]
    assert SPACE.index("insulin_u_per_min") == 1
    with pytest.raises(InvalidInputError, match="unknown channel 'nope'"):
        SPACE.index("nope")


def test_duplicate_names_and_inverted_range_are_refused():
    with pytest.raises(InvalidInputError, match="duplicate"):
        Space.of(Channel("a", "1"), Channel("a", "1"))
    with pytest.raises(InvalidInputError, match="above high"):
        Channel("a", "1", 5.0, 1.0)


def test_round_trip_through_dict_keeps_infinite_bounds():
    space = Space.of(Channel("x", "mm", -math.inf, 3.0, "depth"), *SPACE.channels)
    assert Space.from_dict(space.to_dict()) == space


@given(
    glucose=st.floats(20.0, 600.0),
    insulin=st.floats(0.0, 30.0),
)
def test_values_in_range_pass(glucose: float, insulin: float):
    SPACE.validate(np.array([[glucose, insulin]]))


@given(
    value=st.one_of(
        st.floats(max_value=19.999),
        st.floats(min_value=600.001),
        st.just(math.nan),
        st.just(math.inf),
    )
)
def test_out_of_range_or_non_finite_names_channel_value_and_range(value: float):
    with pytest.raises(InvalidInputError) as error:
        SPACE.validate(np.array([[100.0, 1.0], [value, 1.0]]), "obs")
    message = str(error.value)
    assert "'glucose_mg_dl'" in message
    assert "index (1,)" in message
    assert "[20.0, 600.0] mg/dL" in message


def test_masked_values_are_not_checked():
    values = np.array([[np.nan, 1.0]])
    SPACE.validate(values, mask=np.array([[False, True]]))
    with pytest.raises(InvalidInputError):
        SPACE.validate(values)


def test_wrong_width_is_refused():
    with pytest.raises(InvalidInputError, match="last axis of size 2"):
        SPACE.validate(np.zeros((3, 5)))
