"""Demand traces: load and validate real traces, and a seeded synthetic e-commerce demand generator.

Two on-disk formats are read (chosen from the header, case-insensitive):

- NAB: ``timestamp,value``; naive stamps ``YYYY-MM-DD HH:MM:SS`` -> naive DatetimeIndex.
- Microsoft cloud-monitoring: ``TimeStamp,Value,Label`` (fields may be quoted, CRLF allowed); ISO 8601
  stamps with ``Z`` (or an explicit offset) -> tz-aware UTC index; ``Label`` 0/1 kept as column "label".

Validation never changes data silently. Each problem is an error unless a policy argument names a repair,
and every repair is recorded as a readable sentence in :attr:`TraceReport.repairs`:

=============  ==========================  =================================================================
argument       values (default first)      meaning
=============  ==========================  =================================================================
unsorted       "error", "sort"             a timestamp earlier than the previous row
duplicates     "error", "mean", "first"    repeated timestamps (daylight-saving repeats exist in the data)
gaps           "keep", "interpolate",      steps longer than 1.5 x the inferred interval; "keep" leaves them
               "error"                     and lists them in the report, "interpolate" inserts the missing
                                           steps with values linear in time
negative       "error", "clip", "nan"      values below 0 (clip to 0 or set to NaN)
non_numeric    "error", "drop"             a value that is not a finite number (the row is dropped, which
                                           leaves a gap that the gaps policy then handles)
=============  ==========================  =================================================================

Error messages name the file, the line in the file (header = line 1) and the offending value, e.g.
``api-01.csv line 57: value 'abc' is not a number``. Files are parsed with the csv module: no pickle, no eval.

Units. Neither file format says what ``Value`` measures, so :func:`load_trace` / :func:`load_frame` need it:
``unit="requests/s"`` (a rate: kept as is), ``unit="count"`` (the number of requests in each sampling
interval: divided by the interval in seconds, e.g. 3600 for hourly counts, and returned in requests/s), or
nothing for a file of the dataset registry (matched by sha256), whose registered unit is recorded as it
stands (no conversion). Any other file without a unit is an error: a count per hour read as requests/s would
be 3600x too high. The unit is recorded in ``report.unit`` (what the file holds), ``report.series_unit``
(what the returned values are in), ``report.conversion`` and ``series.attrs["unit"]``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd

from . import checks, datasets, paths
from .atomic import atomic_write_text

__all__ = [
    "TraceReport", "Gap", "Duplicate", "Workload", "Event", "load_trace", "load_frame", "demand",
    "synthetic_demand", "write_synthetic_defaults", "synthetic_checksums", "nab_anomalies", "nab_windows",
    "DEFAULT_EVENTS", "REGULAR_GRID", "SYNTHETIC_FILE", "SYNTHETIC_MONGODB_FILE", "SYNTHETIC_DEFAULTS",
    "POLICIES", "UNITS",
]

#: Units a caller can state for ``Value`` (see the module docstring): rate or count per sampling interval.
UNITS: dict[str, str] = {
    "requests/s": "a rate in requests/s (kept as is)",
    "count": "the number of requests in each sampling interval (divided by the interval in seconds)",
}

POLICIES: dict[str, tuple[str, ...]] = {
    "unsorted": ("error", "sort"),
    "duplicates": ("error", "mean", "first"),
    "gaps": ("keep", "interpolate", "error"),
    "negative": ("error", "clip", "nan"),
    "non_numeric": ("error", "drop"),
}

#: Explicit repair policy giving a regular grid: repeated stamps averaged, missing steps interpolated.
#: For api-01 this merges the repeated hour 2017-11-05T01:00Z and fills the missing 2018-03-11T02:00Z.
REGULAR_GRID: dict[str, str] = {"duplicates": "mean", "gaps": "interpolate"}

_TZ_SUFFIX = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
_MAX_LISTED = 5


# ================================================================================================ report
@dataclass(frozen=True)
class Gap:
    """Missing steps between two consecutive rows; ``line`` is the file line of the row after the gap."""

    after: pd.Timestamp
    before: pd.Timestamp
    missing: int
    line: int

    def __str__(self) -> str:
        s = "s" if self.missing != 1 else ""
        return f"{self.after} -> {self.before}: {self.missing} missing step{s} (before line {self.line})"


@dataclass(frozen=True)
class Duplicate:
    """A timestamp that occurs on several lines of the file."""

    timestamp: pd.Timestamp
    lines: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.timestamp} on lines {', '.join(map(str, self.lines))}"


@dataclass
class TraceReport:
    """What :func:`load_trace` found and did.

    rows: data rows read from the file; rows_out: rows returned (after repairs).
    interval: the most common step (None with fewer than two rows). gaps: steps > 1.5 x interval.
    repairs: one readable sentence per repair applied (empty when the data were returned unchanged).
    """

    file: Path
    format: str
    rows: int
    rows_out: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    interval: pd.Timedelta | None
    gaps: list[Gap] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    out_of_order: int = 0
    negatives: int = 0
    labelled: int = 0
    repairs: list[str] = field(default_factory=list)
    policy: dict[str, str] = field(default_factory=dict)
    unit: str = ""
    series_unit: str = ""
    conversion: str = ""

    @property
    def missing_steps(self) -> int:
        """Total number of missing steps over all gaps (before any interpolation)."""
        return sum(g.missing for g in self.gaps)

    @property
    def clean(self) -> bool:
        """True when the file needed no repair and has no gap, duplicate or out-of-order row."""
        return not (self.gaps or self.duplicates or self.out_of_order or self.negatives or self.repairs)

    def summary(self) -> str:
        """A few readable lines for a notebook: size, span, interval, problems found and repairs made."""
        lines = [f"{self.file.name} ({self.format}): {self.rows} rows read, {self.rows_out} returned, "
                 f"{self.start} .. {self.end}, interval {_fmt_td(self.interval)}"]
        if self.labelled:
            lines.append(f"  labelled anomaly points: {self.labelled}")
        if self.out_of_order:
            lines.append(f"  out-of-order rows: {self.out_of_order}")
        if self.duplicates:
            lines.append(f"  duplicated timestamps: {len(self.duplicates)} ("
                         + _listing(self.duplicates) + ")")
        if self.gaps:
            lines.append(f"  gaps: {len(self.gaps)}, {self.missing_steps} missing step(s) ("
                         + _listing(self.gaps) + ")")
        if self.negatives:
            lines.append(f"  negative values: {self.negatives}")
        if self.unit:
            lines.append(f"  unit: {self.unit}" + (f"; {self.conversion}" if self.conversion else ""))
        lines += [f"  repair: {r}" for r in self.repairs] or ["  repairs: none"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _listing(items: list, limit: int = _MAX_LISTED) -> str:
    shown = "; ".join(str(i) for i in items[:limit])
    return shown + (f"; ... {len(items) - limit} more" if len(items) > limit else "")


def _lines(lines: Iterable[int], limit: int = 10) -> str:
    lines = list(lines)
    shown = ", ".join(map(str, lines[:limit]))
    return shown + (f", ... ({len(lines)} in all)" if len(lines) > limit else "")


def _fmt_td(td: pd.Timedelta | None) -> str:
    if td is None:
        return "n/a"
    seconds = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{td.total_seconds():g} s"


# ================================================================================================ loading
class _Raw(NamedTuple):
    fmt: str
    lines: np.ndarray      # file line of each data row
    stamps: list[str]
    raw_values: list[str]
    raw_labels: list[str] | None


def _check_policies(policy: dict[str, str]) -> None:
    for arg, value in policy.items():
        if value not in POLICIES[arg]:
            raise ValueError(f"{arg}={checks.show(value)}: must be one of {', '.join(map(repr, POLICIES[arg]))}")


def _read_rows(path: Path) -> _Raw:
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a CSV file") from None
    if not data.strip():
        raise ValueError(f"{name}: file is empty (expected a header 'timestamp,value' or "
                         "'TimeStamp,Value,Label' and data rows)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not UTF-8 text (undecodable byte at offset {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 0
    lines: list[int] = []
    stamps: list[str] = []
    values: list[str] = []
    labels: list[str] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if header is None:
                header, header_line = [c.strip().lower() for c in row], reader.line_num
                for col in ("timestamp", "value"):
                    if col not in header:
                        raise ValueError(
                            f"{name} line {header_line}: header {','.join(row)!r} has no {col!r} column "
                            "(expected 'timestamp,value' (NAB) or 'TimeStamp,Value,Label' (Microsoft))")
                extra = [c for c in header if c not in ("timestamp", "value", "label")]
                if extra or len(set(header)) != len(header):
                    raise ValueError(f"{name} line {header_line}: unexpected or repeated column in header "
                                     f"{','.join(row)!r}")
                i_ts, i_val = header.index("timestamp"), header.index("value")
                i_lab = header.index("label") if "label" in header else None
                continue
            if len(row) != len(header):
                raise ValueError(f"{name} line {reader.line_num}: expected {len(header)} fields "
                                 f"({','.join(header)}), found {len(row)}: {','.join(row)!r}")
            lines.append(reader.line_num)
            stamps.append(row[i_ts].strip())
            values.append(row[i_val].strip())
            if i_lab is not None:
                labels.append(row[i_lab].strip())
    except csv.Error as exc:
        raise ValueError(f"{name} line {reader.line_num}: malformed CSV ({exc})") from None
    if not lines:
        raise ValueError(f"{name}: no data rows after the header (line {header_line})")
    fmt = "msft" if i_lab is not None else "nab"
    return _Raw(fmt, np.asarray(lines, dtype=np.int64), stamps, values,
                labels if i_lab is not None else None)


def _parse_value(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _registered(path: Path) -> datasets.Dataset | None:
    """The registry entry whose sha256 is that of the file, or None."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return next((d for d in datasets.REGISTRY.values() if d.sha256 == digest), None)


def _resolve_unit(path: Path, unit: str | None) -> tuple[str, bool]:
    """(unit recorded for the file, whether values are counts per interval to convert to requests/s)."""
    if unit is not None and (not isinstance(unit, str) or unit not in UNITS):
        ds = _registered(path) if isinstance(unit, str) else None
        if ds is not None and unit == ds.units:
            return unit, False
        raise ValueError(f"unit={checks.show(unit)}: must be one of "
                         + "; ".join(f"{k!r} ({v})" for k, v in UNITS.items())
                         + (f", or the registered unit {ds.units!r}" if ds is not None else ""))
    if unit is None:
        ds = _registered(path)
        if ds is None:
            raise ValueError(
                f"{path.name}: unit not stated; pass unit='requests/s' if Value is a rate, or "
                "unit='count' if it is the number of requests per sampling interval (converted to "
                "requests/s by dividing by the interval, 3600 s for hourly counts). Only files of the "
                "dataset registry carry a known unit")
        return ds.units, False
    ds = _registered(path)
    if ds is not None and ds.units == "requests/s" and unit != "requests/s":
        raise ValueError(f"unit={unit!r}: {path.name} is the registered dataset {ds.name!r}, whose Value is "
                         f"{ds.units!r}; pass unit='requests/s' or leave unit out")
    return unit, unit == "count"


def load_frame(path: str | os.PathLike, *, unit: str | None = None, unsorted: str = "error",
               duplicates: str = "error", gaps: str = "keep", negative: str = "error",
               non_numeric: str = "error") -> tuple[pd.DataFrame, TraceReport]:
    """Read a trace into a DataFrame (column "value", plus "label" 0/1 for the Microsoft format).

    The index is a DatetimeIndex named "timestamp" (tz-aware UTC for stamps with ``Z``/offset, naive for
    NAB); it carries a ``freq`` when the result is regular. ``unit``: "requests/s", "count" (per sampling
    interval, converted to requests/s) or None for a registered dataset (see the module docstring).
    Policies: see the module docstring. Returns ``(frame, report)``.
    """
    policy = dict(unsorted=unsorted, duplicates=duplicates, gaps=gaps, negative=negative,
                  non_numeric=non_numeric)
    _check_policies(policy)
    path = Path(path)
    name = path.name
    raw = _read_rows(path)
    file_unit, to_rate = _resolve_unit(path, unit)
    n_rows = len(raw.lines)
    repairs: list[str] = []

    # --- timestamps: aware (UTC) when the first stamp carries Z or an offset, naive otherwise
    stamps = pd.Series(raw.stamps, dtype=object)
    has_tz = stamps.str.contains(_TZ_SUFFIX).to_numpy(dtype=bool)
    aware = bool(has_tz[0])
    usable = stamps.where(has_tz == aware, None)
    parsed = pd.to_datetime(usable, format="ISO8601", utc=aware, errors="coerce")
    bad_ts = parsed.isna().to_numpy()

    values = np.array([_parse_value(v) for v in raw.raw_values], dtype=float)
    bad_val = np.isnan(values)
    labels = None
    bad_lab = np.zeros(n_rows, dtype=bool)
    if raw.raw_labels is not None:
        lab = np.array([_parse_value(v) for v in raw.raw_labels], dtype=float)
        bad_lab = ~np.isin(lab, (0.0, 1.0))
        labels = np.where(bad_lab, 0, lab).astype(np.int8)

    # --- the first structural problem in file order is reported (unless non_numeric='drop' covers it)
    fatal = bad_ts | bad_lab | (bad_val if non_numeric == "error" else False)
    if fatal.any():
        i = int(np.argmax(fatal))
        where = f"{name} line {raw.lines[i]}"
        if bad_ts[i]:
            expected = ("an ISO 8601 time with a UTC designator, e.g. 2017-11-01T00:00:00Z" if aware
                        else "a time like 2014-02-14 14:30:00 (no timezone, like the rows before)")
            raise ValueError(f"{where}: timestamp {raw.stamps[i]!r} is not {expected}")
        if bad_val[i]:
            raise ValueError(f"{where}: value {raw.raw_values[i]!r} is not a number "
                             "(pass non_numeric='drop' to drop such rows)")
        raise ValueError(f"{where}: label {raw.raw_labels[i]!r} is not 0 or 1")

    index = pd.DatetimeIndex(parsed).as_unit("ns")  # asi8 below is in nanoseconds
    lines = raw.lines
    keep = ~bad_val
    if bad_val.any():  # non_numeric == "drop"
        dropped = [f"line {ln} {raw.raw_values[i]!r}" for i, ln in zip(np.flatnonzero(bad_val), lines[bad_val])]
        repairs.append(f"dropped {int(bad_val.sum())} row(s) whose value is not a number: "
                       + _listing(dropped, 10))
        index, values, lines = index[keep], values[keep], lines[keep]
        labels = labels[keep] if labels is not None else None
    raw_values = [v for v, k in zip(raw.raw_values, keep) if k]

    # --- negative values
    neg = values < 0
    n_neg = int(neg.sum())
    if n_neg:
        i = int(np.argmax(neg))
        if negative == "error":
            raise ValueError(f"{name} line {lines[i]}: value {raw_values[i]!r} is negative "
                             "(pass negative='clip' or 'nan' to repair)")
        values = values.copy()
        values[neg] = 0.0 if negative == "clip" else np.nan
        what = "clipped to 0" if negative == "clip" else "set to NaN"
        repairs.append(f"{n_neg} negative value(s) {what}: lines {_lines(lines[neg])}")

    # --- order
    steps = np.diff(index.asi8)
    back = np.flatnonzero(steps < 0)
    if len(back):
        j = int(back[0]) + 1
        if unsorted == "error":
            raise ValueError(f"{name} line {lines[j]}: timestamp {raw.stamps[_orig(raw, lines[j])]!r} is "
                             f"earlier than {raw.stamps[_orig(raw, lines[j - 1])]!r} on line {lines[j - 1]} "
                             "(rows out of order; pass unsorted='sort' to sort them)")
        first_line = int(lines[j])
        order = np.argsort(index.asi8, kind="stable")
        index, values, lines = index[order], values[order], lines[order]
        labels = labels[order] if labels is not None else None
        repairs.append(f"sorted rows by timestamp (stable): {len(back)} backward step(s), the first at "
                       f"line {first_line}")

    # --- duplicates
    dup_groups = _duplicate_groups(index, lines)
    if dup_groups:
        if duplicates == "error":
            d = dup_groups[0]
            first_raw = raw.stamps[_orig(raw, d.lines[1])]
            raise ValueError(f"{name} line {d.lines[1]}: duplicate timestamp {first_raw!r} (first on line "
                             f"{d.lines[0]}); pass duplicates='mean' or 'first' to repair")
        frame = pd.DataFrame({"value": values}, index=index)
        if labels is not None:
            frame["label"] = labels
        grouped = frame.groupby(level=0, sort=False)
        if duplicates == "mean":
            merged = grouped["value"].mean()
            out = merged.to_frame()
            if labels is not None:
                out["label"] = grouped["label"].max().astype(np.int8)
            how = "mean of the values" + (", label = max" if labels is not None else "")
        else:
            out = grouped.head(1)
            how = "first row kept"
        n_extra = sum(len(d.lines) - 1 for d in dup_groups)
        repairs.append(f"merged {len(dup_groups)} duplicated timestamp(s) ({n_extra} extra row(s) removed, "
                       f"{how}): " + _listing(dup_groups))
        keep_first = np.r_[True, np.diff(index.asi8) != 0]
        lines = lines[keep_first]
        index = out.index
        values = out["value"].to_numpy(dtype=float)
        labels = out["label"].to_numpy(dtype=np.int8) if labels is not None else None

    # --- interval and gaps
    interval, gap_list = _gaps(index, lines)
    if gap_list and gaps == "error":
        g = gap_list[0]
        raise ValueError(f"{name} line {g.line}: gap of {_fmt_td(g.before - g.after)} after {g.after} "
                         f"({g.missing} missing step(s) at the {_fmt_td(interval)} interval); pass "
                         "gaps='keep' or 'interpolate'")
    frame = pd.DataFrame({"value": values}, index=index)
    if labels is not None:
        frame["label"] = labels
    if gap_list and gaps == "interpolate":
        frame = _interpolate(frame, gap_list, interval)
        repairs.append(f"interpolated {sum(g.missing for g in gap_list)} missing step(s) in "
                       f"{len(gap_list)} gap(s), linear in time" + (", label 0" if labels is not None else "")
                       + ": " + _listing(gap_list))
    frame.index.name = "timestamp"
    if interval is not None and len(frame) >= 2 and (np.diff(frame.index.asi8) == interval.value).all():
        frame.index = pd.DatetimeIndex(frame.index, freq=pd.tseries.frequencies.to_offset(interval))
    series_unit, conversion = file_unit, ""
    if to_rate:
        if interval is None:
            raise ValueError(f"{name}: unit='count' needs the sampling interval to convert counts to "
                             "requests/s, and the file has fewer than two distinct timestamps")
        seconds = interval.total_seconds()
        frame["value"] = frame["value"] / seconds
        series_unit = "requests/s"
        conversion = (f"counts per {_fmt_td(interval)} interval divided by {seconds:g} s to requests/s")
        file_unit = f"count per {_fmt_td(interval)}"
    frame.attrs["unit"] = series_unit

    report = TraceReport(
        file=path, format=raw.fmt, rows=n_rows, rows_out=len(frame),
        start=frame.index[0] if len(frame) else None, end=frame.index[-1] if len(frame) else None,
        interval=interval, gaps=gap_list, duplicates=dup_groups, out_of_order=len(back), negatives=n_neg,
        labelled=int(frame["label"].sum()) if "label" in frame else 0, repairs=repairs, policy=policy,
        unit=file_unit, series_unit=series_unit, conversion=conversion)
    return frame, report


def _orig(raw: _Raw, line: int) -> int:
    """Row index in the raw file of the row on ``line``."""
    return int(np.searchsorted(raw.lines, line))


def _duplicate_groups(index: pd.DatetimeIndex, lines: np.ndarray) -> list[Duplicate]:
    ns = index.asi8
    same = np.flatnonzero(np.diff(ns) == 0)
    groups: list[Duplicate] = []
    i = 0
    while i < len(same):
        start = same[i]
        end = start + 1
        while i + 1 < len(same) and same[i + 1] == end:
            i += 1
            end += 1
        groups.append(Duplicate(index[start], tuple(int(x) for x in lines[start:end + 1])))
        i += 1
    return groups


def _gaps(index: pd.DatetimeIndex, lines: np.ndarray) -> tuple[pd.Timedelta | None, list[Gap]]:
    if len(index) < 2:
        return None, []
    steps = np.diff(index.asi8)
    positive = steps[steps > 0]
    if not len(positive):
        return None, []
    vals, counts = np.unique(positive, return_counts=True)
    step = int(vals[np.argmax(counts)])  # the most common step (smallest on ties)
    interval = pd.Timedelta(step, unit="ns")
    big = np.flatnonzero(steps > 1.5 * step)
    gap_list = [Gap(index[k], index[k + 1], max(int(round(steps[k] / step)) - 1, 1), int(lines[k + 1]))
                for k in big]
    return interval, gap_list


def _interpolate(frame: pd.DataFrame, gap_list: list[Gap], interval: pd.Timedelta) -> pd.DataFrame:
    new_times = []
    for g in gap_list:
        new_times += [g.after + k * interval for k in range(1, g.missing + 1) if g.after + k * interval < g.before]
    new_index = pd.DatetimeIndex(new_times, dtype=frame.index.dtype)
    known = frame["value"].notna().to_numpy()
    x = frame.index.asi8[known].astype(float)
    y = frame["value"].to_numpy()[known]
    filled = np.interp(new_index.asi8.astype(float), x, y)
    extra = pd.DataFrame({"value": filled}, index=new_index)
    if "label" in frame:
        extra["label"] = np.zeros(len(extra), dtype=np.int8)
    out = pd.concat([frame, extra]).sort_index(kind="stable")
    if "label" in out:
        out["label"] = out["label"].astype(np.int8)
    return out


def load_trace(path: str | os.PathLike, *, unit: str | None = None, unsorted: str = "error",
               duplicates: str = "error", gaps: str = "keep", negative: str = "error",
               non_numeric: str = "error") -> tuple[pd.Series, TraceReport]:
    """Read a trace file (NAB or Microsoft format) as ``(series, report)``.

    ``unit`` says what Value measures: "requests/s" (kept), "count" (requests per sampling interval,
    divided by the interval in seconds: the series is then in requests/s), or None for a file of the
    dataset registry (its registered unit, no conversion); otherwise ValueError. ``series.attrs["unit"]``
    and ``report.unit`` / ``report.series_unit`` / ``report.conversion`` record it.

    The series is named "value" with a DatetimeIndex; the Microsoft ``Label`` column is available through
    :func:`load_frame` (same arguments) or :func:`demand`. Strict by default: out-of-order rows, duplicated
    timestamps, negative and non-numeric values raise ValueError naming file, line and value; gaps are kept
    and listed in the report. Repairs happen only through the policy arguments and are listed in
    ``report.repairs``.
    """
    frame, report = load_frame(path, unit=unit, unsorted=unsorted, duplicates=duplicates, gaps=gaps,
                               negative=negative, non_numeric=non_numeric)
    series = frame["value"]
    series.attrs["unit"] = report.series_unit
    return series, report


# ================================================================================================ NAB labels
def _nab_entries(name: str, kind: str, data_dir) -> list | None:
    """The entries of NAB trace ``name`` in the label file ``kind`` ("nab-labels",
    "nab-windows"), or None when that file is absent; ValueError if ``name`` is not a NAB trace."""
    ds = datasets.get(name)
    if not ds.upstream_key:
        raise ValueError(f"dataset {checks.show(name)} is not a NAB trace")
    path = datasets.locate(kind, data_dir)
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle).get(ds.upstream_key, [])


def nab_anomalies(name: str, data_dir: str | os.PathLike | None = "") -> pd.DatetimeIndex | None:
    """NAB point labels of dataset ``name`` (naive timestamps), or None when the label file is absent."""
    labels = _nab_entries(name, "nab-labels", data_dir)
    if labels is None:
        return None
    return pd.DatetimeIndex(pd.to_datetime(labels, format="ISO8601"), name="timestamp")


def nab_windows(name: str, data_dir: str | os.PathLike | None = "") -> pd.DataFrame | None:
    """NAB anomaly windows of dataset ``name`` (columns start, end), or None when the file is absent."""
    pairs = _nab_entries(name, "nab-windows", data_dir)
    if pairs is None:
        return None
    return pd.DataFrame({"start": pd.to_datetime([p[0] for p in pairs], format="ISO8601"),
                         "end": pd.to_datetime([p[1] for p in pairs], format="ISO8601")})


# ================================================================================================ demand
SYNTHETIC_FILE = "ecommerce_demand.csv"
SYNTHETIC_MONGODB_FILE = "mongodb_query_rate.csv"
#: Registered dataset -> committed synthetic stand-in (data/synthetic/) used when the real file is absent.
SYNTHETIC_DEFAULTS = {"ecommerce-api-rps": SYNTHETIC_FILE, "mongodb-app-rps": SYNTHETIC_MONGODB_FILE}


@dataclass(frozen=True, eq=False)
class Workload:
    """A demand series ready for forecasting and capacity planning.

    series: values (``units``, e.g. requests/s as an hourly mean) on a DatetimeIndex.
    label: human provenance for captions; files: the files read; is_real: False for the synthetic default.
    anomalies: timestamps labelled anomalous (expert labels for real data, event hours for synthetic).
    report: the validation report (gaps, duplicates, repairs).
    """

    name: str
    series: pd.Series
    label: str
    files: list[Path]
    is_real: bool
    anomalies: pd.DatetimeIndex
    report: TraceReport
    units: str


def demand(name: str = "ecommerce-api-rps", data_dir: str | os.PathLike | None = "", *,
           unsorted: str = "error", duplicates: str = "error", gaps: str = "keep", negative: str = "error",
           non_numeric: str = "error") -> Workload:
    """The demand series of dataset ``name``: the verified real file when available, else its synthetic default.

    Policies are those of :func:`load_trace` (strict by default). The real api-01.csv has a daylight-saving
    artefact: 2017-11-05T01:00Z is repeated (lines 99-100) and 2018-03-11T02:00Z is missing. With the
    defaults the duplicate is an error naming those lines; pass ``**REGULAR_GRID`` (duplicates="mean",
    gaps="interpolate") to get a regular hourly grid, with both repairs listed in ``workload.report.repairs``.
    """
    ds = datasets.get(name)
    if ds.kind != "trace":
        raise ValueError(f"dataset {name!r} is a label file, not a demand trace")
    policy = dict(unsorted=unsorted, duplicates=duplicates, gaps=gaps, negative=negative, non_numeric=non_numeric)
    _check_policies(policy)
    path = datasets.locate(name, data_dir)
    if path is not None:
        try:
            frame, report = load_frame(path, unit=ds.units if ds.units in UNITS else None, **policy)
        except ValueError as exc:
            raise ValueError(f"{exc}. To get a regular grid with both repairs recorded, call "
                             f"demand({name!r}, ..., **workloads.REGULAR_GRID)") from None
        if "label" in frame:
            anomalies = frame.index[frame["label"] == 1]
        else:
            anomalies = nab_anomalies(name, data_dir)
            anomalies = anomalies if anomalies is not None else pd.DatetimeIndex([], dtype=frame.index.dtype)
        license_short = ds.license.split(" ", 1)[0]
        label = f"real: {ds.title} ({ds.filename}, {license_short})"
        return Workload(name, frame["value"], label, [path], True, pd.DatetimeIndex(anomalies), report, ds.units)
    if name not in SYNTHETIC_DEFAULTS:
        raise FileNotFoundError(
            f"dataset {name!r} ({ds.relpath}) not found under any data root and it has no synthetic default: "
            f"run `make data` or set {paths.DATA_ENV_VAR} to a copy of the data")
    synth = paths.DATA_SYNTHETIC / SYNTHETIC_DEFAULTS[name]
    if not synth.is_file():
        raise FileNotFoundError(f"{synth}: synthetic default missing; regenerate it with "
                                "`python -m analysis synthetic`")
    expected = synthetic_checksums(paths.DATA_SYNTHETIC).get(synth.name)
    if expected is None:
        raise ValueError(f"{synth}: no checksum in {paths.DATA_SYNTHETIC / 'SHA256SUMS'}")
    datasets.verify(synth, expected, what="synthetic default")
    frame, report = load_frame(synth, unit="requests/s", **policy)  # the stand-in is generated in requests/s
    rel = synth.relative_to(paths.ROOT) if synth.is_relative_to(paths.ROOT) else synth
    label = f"synthetic default: {rel.as_posix()} (no real data found)"
    return Workload(name, frame["value"], label, [synth], False, frame.index[frame["label"] == 1], report,
                    ds.units)


# ================================================================================================ synthetic
class Event(NamedTuple):
    """A demand event: from ``start`` (UTC) for ``hours`` hours, demand is multiplied by ``multiplier``."""

    start: str
    multiplier: float
    hours: float
    name: str = ""


#: Events shaped after the real api-01 series (daily means relative to the surrounding weeks): a
#: Black Friday weekend (+25 %), Cyber Monday (+20 %), a Christmas Day surge (x2.2, this shop peaks on
#: Dec 25, it does not dip) decaying over two days, a May 1 promotion, and three one-hour flash surges
#: like the labelled spikes of 2017-11-14, 2018-03-08 (the series maximum, ~390 requests/s) and 2018-07-12.
DEFAULT_EVENTS: tuple[Event, ...] = (
    Event("2017-11-14 22:00", 3.0, 1, "flash surge"),
    Event("2017-11-24 00:00", 1.25, 72, "Black Friday weekend"),
    Event("2017-11-27 00:00", 1.2, 24, "Cyber Monday"),
    Event("2017-12-25 00:00", 2.2, 24, "Christmas Day"),
    Event("2017-12-26 00:00", 1.5, 24, "Boxing Day"),
    Event("2017-12-27 00:00", 1.2, 48, "after Christmas"),
    Event("2018-03-08 19:00", 4.5, 1, "flash surge"),
    Event("2018-03-08 20:00", 3.0, 1, "flash surge (second hour)"),
    Event("2018-05-01 00:00", 1.5, 24, "May 1 promotion"),
    Event("2018-07-12 20:00", 3.0, 1, "flash surge"),
)

#: Mean level per weekday (Mon..Sun) relative to the week, measured on api-01 (weekend busier).
WEEKLY_FACTORS = (0.930, 0.945, 0.898, 0.932, 1.022, 1.154, 1.119)
# First three harmonics (amplitude, phase in rad) of api-01's mean hour-of-day profile relative to its mean
# (UTC hours: trough around 07:00-08:00, plateau 17:00-23:00).
_DAILY_HARMONICS = ((0.405, 1.050), (0.066, -0.911), (0.036, -0.419))


def synthetic_demand(seed: int = 2017, start: str = "2017-11-01", periods: int = 6192, freq: str = "h",
                     base_rps: float = 71.0, daily_amplitude: float = 1.0,
                     weekly_factors: tuple[float, ...] = WEEKLY_FACTORS, trend_per_year: float = 0.35,
                     noise_sd: float = 0.11, noise_ar: float = 0.75, daily_noise_sd: float = 0.08,
                     events: Iterable[Event | tuple] = DEFAULT_EVENTS,
                     with_labels: bool = False) -> pd.Series | pd.DataFrame:
    """Seeded synthetic e-commerce demand in requests/s (mean per interval), tz-aware UTC index.

    demand(t) = base_rps x daily(t) x weekly(t) x trend(t) x events(t) x noise(t):
    daily: hour-of-day profile of api-01 scaled by ``daily_amplitude`` (0 = flat); weekly: ``weekly_factors``
    (Mon..Sun, normalised to mean 1, interpolated between day centres); trend: linear, ``trend_per_year``
    fractional growth per year centred on the middle of the series; events: ``(start, multiplier, hours)``
    tuples; noise: log-normal with mean 1, an AR(1) hourly part (marginal sd ``noise_sd``, lag-1
    correlation ``noise_ar``) plus a per-day level (sd ``daily_noise_sd``). Defaults reproduce the scale of
    api-01 (mean ~72 requests/s; peak ~360-440 requests/s depending on the seed, api-01: 391). Same seed -> same numbers (numpy ``default_rng``); values are
    rounded to 4 decimals. ``with_labels=True`` returns a DataFrame with "value" and "label" (1 during events).
    """
    _require(isinstance(seed, (int, np.integer)) and not isinstance(seed, bool), "seed", seed, "an integer")
    _require(isinstance(periods, (int, np.integer)) and not isinstance(periods, bool) and periods > 0,
             "periods", periods, "a positive integer")
    _require(_is_num(base_rps) and base_rps > 0, "base_rps", base_rps, "a positive number of requests/s")
    _require(_is_num(daily_amplitude) and daily_amplitude >= 0, "daily_amplitude", daily_amplitude, ">= 0")
    _require(_is_num(noise_sd) and noise_sd >= 0, "noise_sd", noise_sd, ">= 0")
    _require(_is_num(daily_noise_sd) and daily_noise_sd >= 0, "daily_noise_sd", daily_noise_sd, ">= 0")
    _require(_is_num(noise_ar) and 0 <= noise_ar < 1, "noise_ar", noise_ar, "in [0, 1)")
    _require(_is_num(trend_per_year), "trend_per_year", trend_per_year, "a number (fraction per year)")
    weekly = np.asarray(weekly_factors, dtype=float)
    _require(weekly.shape == (7,) and (weekly > 0).all(), "weekly_factors", weekly_factors,
             "seven positive numbers (Mon..Sun)")
    try:
        t_start = pd.Timestamp(start)
        t_start = t_start.tz_localize("UTC") if t_start.tzinfo is None else t_start.tz_convert("UTC")
        index = pd.date_range(t_start, periods=int(periods), freq=freq, name="timestamp")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start={checks.show(start)}, freq={checks.show(freq)}: not a valid start time / frequency ({exc})") from None
    step_h = (index[1] - index[0]).total_seconds() / 3600 if len(index) > 1 else 1.0
    _require(step_h > 0, "freq", freq, "a positive step")

    hours = np.asarray((index - index[0]) / pd.Timedelta(hours=1), dtype=float)  # hours since start
    hod = index.hour.to_numpy() + index.minute.to_numpy() / 60  # hour of day (UTC)
    daily = np.ones(len(index))
    for k, (amp, phase) in enumerate(_DAILY_HARMONICS, start=1):
        daily += daily_amplitude * amp * np.cos(2 * np.pi * k * hod / 24 + phase)
    _require(daily.min() > 0, "daily_amplitude", daily_amplitude, "small enough to keep demand positive")
    # weekly factor interpolated between day centres (noon), periodic over the week
    weekly = weekly / weekly.mean()
    dow = index.day_of_week.to_numpy() + hod / 24                 # 0 = Monday 00:00
    centres = np.arange(-1, 8) + 0.5
    week = np.interp(dow, centres, np.r_[weekly[-1], weekly, weekly[0]])
    total_h = hours[-1] if len(hours) > 1 else 1.0
    trend = 1 + trend_per_year * (hours - total_h / 2) / (365.25 * 24)
    _require(trend.min() > 0, "trend_per_year", trend_per_year, "small enough to keep demand positive")

    surge = np.ones(len(index))
    label = np.zeros(len(index), dtype=np.int8)
    for ev in _events(events):
        t0 = pd.Timestamp(ev.start, tz="UTC") if pd.Timestamp(ev.start).tzinfo is None else pd.Timestamp(ev.start)
        mask = (index >= t0) & (index < t0 + pd.Timedelta(hours=ev.hours))
        surge[mask] *= ev.multiplier
        label[mask] = 1

    rng = np.random.default_rng(seed)
    z = rng.standard_normal(len(index))
    n_days = int(hours[-1] // 24) + 1 if len(hours) else 1
    day_level = rng.standard_normal(n_days) * daily_noise_sd
    innov_sd = noise_sd * math.sqrt(1 - noise_ar ** 2)
    eps = z * innov_sd
    eps[0] = z[0] * noise_sd                      # start in the stationary distribution
    from scipy.signal import lfilter  # here, not at import: scipy.signal pulls in scipy.stats (~0.8 CPU-s)

    hourly = lfilter([1.0], [1.0, -noise_ar], eps)
    log_noise = hourly + day_level[(hours // 24).astype(int)]
    noise = np.exp(log_noise - 0.5 * (noise_sd ** 2 + daily_noise_sd ** 2))  # mean 1

    value = np.round(base_rps * daily * week * trend * surge * noise, 4)
    series = pd.Series(value, index=index, name="value")
    if with_labels:
        return pd.DataFrame({"value": series, "label": label}, index=index)
    return series


def _is_num(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def _require(ok: bool, name: str, value, what: str) -> None:
    if not ok:
        raise ValueError(f"{name}={checks.show(value)}: must be {what}")


def _events(events: Iterable[Event | tuple]) -> list[Event]:
    out = []
    for i, ev in enumerate(events):
        try:
            ev = Event(*ev)
            pd.Timestamp(ev.start)
            ok = float(ev.multiplier) > 0 and float(ev.hours) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"events[{i}]={checks.show(ev)}: must be (start time, multiplier > 0, hours > 0[, name])")
        out.append(Event(ev.start, float(ev.multiplier), float(ev.hours), str(ev.name)))
    return out


def _to_csv(frame: pd.DataFrame) -> str:
    """Microsoft cloud-monitoring format with fixed float formatting (byte-stable)."""
    stamps = frame.index.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    body = "".join(f'"{t}",{v:.4f},{int(lab)}\n' for t, v, lab in zip(stamps, frame["value"], frame["label"]))
    return "TimeStamp,Value,Label\n" + body


def synthetic_checksums(folder: str | os.PathLike = paths.DATA_SYNTHETIC) -> dict[str, str]:
    """File name -> sha256 from ``folder/SHA256SUMS`` (``sha256sum`` format); empty when absent."""
    sums = Path(folder) / "SHA256SUMS"
    if not sums.is_file():
        return {}
    out = {}
    for n, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](\S+)", line.strip())
        if not m:
            raise ValueError(f"{sums} line {n}: not '<sha256>  <file>': {line!r}")
        out[m.group(2)] = m.group(1)
    return out


def _synthetic_frames() -> dict[str, pd.DataFrame]:
    """File name -> frame (value, label) of every committed synthetic default, default parameters."""
    from analysis import consistency  # imports this module: import it only when the files are written

    mongo = consistency.synthetic_query_rate()           # seed 2018, 1-min, requests/s, no labelled anomaly
    return {SYNTHETIC_FILE: synthetic_demand(with_labels=True),
            SYNTHETIC_MONGODB_FILE: pd.DataFrame({"value": mongo, "label": np.zeros(len(mongo), dtype=int)})}


def write_synthetic_defaults(dest: str | os.PathLike = paths.DATA_SYNTHETIC) -> list[Path]:
    """Regenerate the synthetic defaults (``SYNTHETIC_DEFAULTS``: ``ecommerce_demand.csv`` from
    :func:`synthetic_demand` seed 2017, ``mongodb_query_rate.csv`` from
    ``consistency.synthetic_query_rate`` seed 2018) and ``SHA256SUMS`` in ``dest``.

    This is what ``python -m analysis synthetic`` runs. Writes are atomic and the bytes are identical on
    every run. Returns the written paths (the CSV files in ``SYNTHETIC_DEFAULTS`` order, then SHA256SUMS).
    """
    dest = Path(dest)
    sums = synthetic_checksums(dest)
    written = []
    for name, frame in _synthetic_frames().items():
        text = _to_csv(frame)
        written.append(atomic_write_text(dest / name, text))
        sums[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    sums_path = atomic_write_text(dest / "SHA256SUMS",
                                  "".join(f"{h}  {f}\n" for f, h in sorted(sums.items())))
    return written + [sums_path]
