"""load_trace / load_frame record the unit of Value and convert counts per interval to requests/s
(issue 11): a count per hour can no longer be read silently as requests/s (3600x too high)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REAL_DATA, requires_real_data

from analysis import datasets, workloads
from analysis.workloads import load_frame, load_trace


def write_counts(tmp_path, counts, step="1h", name="purchases.csv"):
    times = pd.date_range("2021-01-04", periods=len(counts), freq=step, tz="UTC")
    text = "TimeStamp,Value,Label\n" + "".join(
        f'"{t:%Y-%m-%dT%H:%M:%SZ}",{c},0\n' for t, c in zip(times, counts))
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_unit_is_required_for_a_file_outside_the_registry(tmp_path):
    path = write_counts(tmp_path, [0, 3, 7200, 5])
    with pytest.raises(ValueError, match=r"purchases\.csv: unit not stated; pass unit='requests/s' "
                                         r"if Value is a rate, or unit='count'"):
        load_trace(path)
    with pytest.raises(ValueError, match="unit not stated"):
        load_frame(path)
    with pytest.raises(ValueError, match=r"unit='rps': must be one of 'requests/s'"):
        load_trace(path, unit="rps")


def test_hourly_counts_are_divided_by_3600_and_the_unit_recorded(tmp_path):
    counts = [0, 3, 7200, 5]
    path = write_counts(tmp_path, counts)
    s, report = load_trace(path, unit="count")
    np.testing.assert_allclose(s.to_numpy(), np.array(counts) / 3600.0)
    assert s.attrs["unit"] == "requests/s" and report.series_unit == "requests/s"
    assert report.unit == "count per 1 h"
    assert report.conversion == "counts per 1 h interval divided by 3600 s to requests/s"
    assert "unit: count per 1 h; counts per 1 h interval divided by 3600 s" in report.summary()
    rate, report = load_trace(path, unit="requests/s")
    np.testing.assert_array_equal(rate.to_numpy(), counts)
    assert rate.attrs["unit"] == "requests/s" and report.conversion == ""


def test_five_minute_counts_are_divided_by_300(tmp_path):
    path = write_counts(tmp_path, [600, 300, 0], step="5min")
    frame, report = load_frame(path, unit="count")
    np.testing.assert_allclose(frame["value"].to_numpy(), [2.0, 1.0, 0.0])
    assert report.unit == "count per 5 min" and frame.attrs["unit"] == "requests/s"


def test_count_needs_an_interval(tmp_path):
    path = write_counts(tmp_path, [5])
    with pytest.raises(ValueError, match="unit='count' needs the sampling interval"):
        load_trace(path, unit="count")


def test_the_unit_flows_into_the_backtest(tmp_path):
    from analysis import forecasting as fc

    rng = np.random.default_rng(0)
    counts = rng.poisson(3600 * 2.0, 24 * 6)
    s, _ = load_trace(write_counts(tmp_path, counts), unit="count")
    assert 1.9 < s.mean() < 2.1          # requests/s, not 7200
    bt = fc.backtest(s, {"sn": lambda: fc.SeasonalNaive(season=24)}, initial=96, horizon=24,
                     step=24)
    assert bt.attrs["unit"] == "requests/s"


def test_demand_default_keeps_working(no_real_data):
    w = workloads.demand()
    assert w.units == "requests/s" and w.series.attrs["unit"] == "requests/s"
    assert w.report.unit == "requests/s"


@requires_real_data
def test_registered_file_needs_no_unit_and_a_contradicting_unit_is_an_error():
    api = REAL_DATA / datasets.get("ecommerce-api-rps").relpath
    s, report = load_trace(api, duplicates="mean")
    assert report.unit == "requests/s" and s.attrs["unit"] == "requests/s"
    with pytest.raises(ValueError, match=r"unit='count': api-01\.csv is the registered dataset "
                                         r"'ecommerce-api-rps', whose Value is 'requests/s'"):
        load_trace(api, unit="count", duplicates="mean")
    cpu = datasets.get("nab-ec2-cpu-24ae8d")
    s, report = load_trace(REAL_DATA / cpu.relpath)
    assert report.unit == "%" and s.attrs["unit"] == "%" and report.conversion == ""
    s2, _ = load_trace(REAL_DATA / cpu.relpath, unit="%")   # the registered unit, stated
    assert s2.equals(s)
