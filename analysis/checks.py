"""Argument checks shared by every module: each raises ValueError naming the argument and the value.

Every check takes the argument's name (as it should appear in the message, e.g. ``"servers"`` or
``"service 'api': timeout"``) and the value, and returns the value converted (``float`` or
``int``) when it is acceptable.

What is accepted (one rule for the whole package):

- Numbers are Python or numpy ints and floats (anything registered as ``numbers.Real``). Bools
  (Python and numpy) are rejected, and so are strings, ``None`` and numpy arrays; a 0-d array
  (what numpy reductions sometimes return) is taken as the scalar it holds.
- Real numbers must be finite: NaN and +-inf are rejected.
- Integers may be given as integral floats (``4.0`` is ``4``; ``4.5`` is rejected), since counts
  computed with numpy/pandas arithmetic often arrive as floats.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "show", "real", "positive", "nonnegative", "open_unit", "unit_interval",
    "integer", "optional_integer", "nonempty_string",
]


_SHOW_LIMIT = 200  # characters of a shown value before it is cut with "..."


def show(value) -> str:
    """A value as it should appear in a message: ``repr`` with numpy scalars as plain numbers.

    ``np.float64(-20.0)`` shows as ``-20.0`` and ``np.str_('x')`` as ``'x'`` (numpy >= 2 reprs name the
    type); 0-d arrays show the scalar they hold, other arrays a list; tuples, lists, named tuples and
    dicts are shown element by element. Longer than 200 characters: cut with "...".
    """
    text = _show(value)
    return text if len(text) <= _SHOW_LIMIT else text[:_SHOW_LIMIT - 3] + "..."


def _show(value) -> str:
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, np.ndarray):
        return repr(value.item()) if value.ndim == 0 else _show(value.tolist())
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # named tuple
        inner = ", ".join(f"{k}={_show(v)}" for k, v in zip(value._fields, value))
        return f"{type(value).__name__}({inner})"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_show(v) for v in value)
        if isinstance(value, tuple):
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        return f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_show(k)}: {_show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _scalar(value):
    """The scalar inside a 0-d numpy array; anything else unchanged."""
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def real(name: str, value) -> float:
    """A finite real number, as a float."""
    value = _scalar(value)
    if not _is_number(value):
        raise ValueError(f"{name} must be a number, got {show(value)}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {show(value)}")
    return v


def positive(name: str, value) -> float:
    """A finite number > 0."""
    v = real(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {show(value)}")
    return v


def nonnegative(name: str, value) -> float:
    """A finite number >= 0."""
    v = real(name, value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {show(value)}")
    return v


def open_unit(name: str, value) -> float:
    """A number strictly between 0 and 1 (e.g. a tail probability or a target utilisation)."""
    v = real(name, value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {show(value)}")
    return v


def unit_interval(name: str, value) -> float:
    """A number in [0, 1] (e.g. a probability)."""
    v = real(name, value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {show(value)}")
    return v


def integer(name: str, value, minimum: int = 1) -> int:
    """An integer >= ``minimum``, as an int (integral floats such as 4.0 accepted)."""
    value = _scalar(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        v = int(value)
    elif _is_number(value) and math.isfinite(float(value)) and float(value).is_integer():
        v = int(value)
    else:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {show(value)}")
    if v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {show(value)}")
    return v


def optional_integer(name: str, value, minimum: int = 1) -> int | None:
    """None, or an integer >= ``minimum`` (see :func:`integer`)."""
    return None if value is None else integer(name, value, minimum)


def nonempty_string(name: str, value) -> str:
    """A string with at least one non-blank character (returned unchanged)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {show(value)}")
    return value
