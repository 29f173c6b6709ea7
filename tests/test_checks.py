"""The shared argument checks: one acceptance rule, messages that name the argument and value."""
import numpy as np
import pytest

from analysis import checks


def test_accepts_numbers_numpy_scalars_and_0d_arrays():
    assert checks.real("x", np.float64(2.5)) == 2.5
    assert checks.real("x", np.array(2.5)) == 2.5
    assert checks.integer("n", 4.0) == 4 and checks.integer("n", np.int64(3)) == 3
    assert checks.optional_integer("n", None) is None


@pytest.mark.parametrize("bad", [True, np.bool_(False), "1", None, np.array([1.0]), float("nan"),
                                 float("inf")])
def test_rejects_non_numbers_and_non_finite(bad):
    with pytest.raises(ValueError, match="rate"):
        checks.positive("rate", bad)


@pytest.mark.parametrize("check,value,text", [
    (checks.positive, 0.0, "> 0"), (checks.nonnegative, -1, ">= 0"),
    (checks.open_unit, 1.0, "strictly between 0 and 1"), (checks.unit_interval, 1.5, r"in \[0, 1\]"),
])
def test_range_checks_name_argument_and_value(check, value, text):
    with pytest.raises(ValueError, match=f"arg must be {text}, got {value!r}"):
        check("arg", value)


def test_integer_rejects_fractions_and_small_values():
    with pytest.raises(ValueError, match="servers must be an integer >= 1, got 4.5"):
        checks.integer("servers", 4.5)
    with pytest.raises(ValueError, match="servers must be an integer >= 1, got 0"):
        checks.integer("servers", 0)
