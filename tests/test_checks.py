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


# ------------------------------------------------------------------------------ plain numbers in messages
@pytest.mark.parametrize("value,shown", [
    (np.float64(-20.0), "-20.0"), (np.int64(3), "3"), (np.array(2.5), "2.5"), (np.str_("x"), "'x'"),
    (np.bool_(True), "True"), (np.array([1.0, 2.0]), "[1.0, 2.0]"), ((np.float64(1.5),), "(1.5,)"),
    ({"a": np.int32(1)}, "{'a': 1}"), (-20.0, "-20.0"), ("s", "'s'"), (None, "None"),
])
def test_show_prints_plain_values(value, shown):
    assert checks.show(value) == shown


def test_show_named_tuples_and_long_values():
    from collections import namedtuple

    Point = namedtuple("Point", "x y")
    assert checks.show(Point(np.float64(1.0), np.int64(2))) == "Point(x=1.0, y=2)"
    long = checks.show(np.arange(1000))
    assert len(long) == 200 and long.endswith("...")


@pytest.mark.parametrize("check", [checks.real, checks.positive, checks.nonnegative, checks.open_unit,
                                   checks.unit_interval, checks.integer])
def test_messages_print_numpy_values_as_plain_numbers(check):
    bad = np.float64(-20.5) if check is checks.integer else np.float64(-20.0)
    if check is checks.real:
        bad = np.float64("nan")
    with pytest.raises(ValueError) as info:
        check("x", bad)
    msg = str(info.value)
    assert "np." not in msg and msg.endswith(f"got {float(bad)!r}")
