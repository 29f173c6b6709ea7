"""Trace loading and validation (bad data in small files, real-data quirks), demand(), synthetic generator."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis import datasets, paths, workloads
from analysis.workloads import REGULAR_GRID, load_frame, load_trace
from conftest import REAL_DATA, requires_real_data

MSFT_HEADER = "TimeStamp,Value,Label\n"


def write(tmp_path, text: str, name: str = "api-01.csv", newline: str = "\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def nab_rows(values, start="2014-01-01 00:00:00", step="1h"):
    times = pd.date_range(start, periods=len(values), freq=step)
    return "timestamp,value\n" + "".join(f"{t:%Y-%m-%d %H:%M:%S},{v}\n" for t, v in zip(times, values))


def msft_rows(values, labels=None, start="2017-11-01T00:00:00Z"):
    times = pd.date_range(start, periods=len(values), freq="h")
    labels = labels or [0] * len(values)
    return MSFT_HEADER + "".join(f'"{t:%Y-%m-%dT%H:%M:%SZ}",{v},{lab}\n'
                                 for t, v, lab in zip(times, values, labels))


def replace_line(text: str, line: int, new: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[line - 1] = new + "\n"
    return "".join(lines)


# ================================================================================================ formats
def test_msft_format_quoted_utc_and_labels(tmp_path):
    text = msft_rows([10.5, 11, 12.25], labels=[0, 1, 0])
    text = text.replace(",11,", ',"11",')  # a quoted value, as in the real files
    frame, report = load_frame(write(tmp_path, text), unit="requests/s")
    assert str(frame.index.tz) == "UTC" and frame.index[0] == pd.Timestamp("2017-11-01", tz="UTC")
    assert frame["value"].tolist() == [10.5, 11.0, 12.25]
    assert frame["label"].tolist() == [0, 1, 0]
    assert report.format == "msft" and report.labelled == 1 and report.clean
    assert report.interval == pd.Timedelta("1h") and frame.index.freqstr == "h"
    series, _ = load_trace(write(tmp_path, text), unit="requests/s")
    assert series.name == "value" and series.equals(frame["value"])


def test_nab_format_naive_crlf_bom_all_quoted(tmp_path):
    lf = nab_rows([1.0, 2.0, 3.0], step="5min")
    a, _ = load_trace(write(tmp_path, lf, "a.csv"), unit="requests/s")
    crlf = "\ufeff" + lf.replace("2.0", '"2.0"')
    b, report = load_trace(write(tmp_path, crlf, "b.csv", newline="\r\n"), unit="requests/s")
    assert a.index.tz is None and a.equals(b)
    assert report.format == "nab" and report.interval == pd.Timedelta("5min")


def test_explicit_offset_is_converted_to_utc(tmp_path):
    text = MSFT_HEADER + '"2017-11-01T01:00:00+01:00",1,0\n"2017-11-01T01:00:00Z",2,0\n'
    s, _ = load_trace(write(tmp_path, text), unit="requests/s")
    assert list(s.index) == [pd.Timestamp("2017-11-01 00:00", tz="UTC"), pd.Timestamp("2017-11-01 01:00", tz="UTC")]


# ================================================================================================ bad data
def test_shuffled_rows(tmp_path):
    rows = nab_rows([1, 2, 3, 4, 5, 6]).splitlines(keepends=True)
    shuffled = rows[:1] + [rows[1], rows[4], rows[2], rows[3], rows[5], rows[6]]
    path = write(tmp_path, "".join(shuffled), "shuffled.csv")
    with pytest.raises(ValueError, match=r"^shuffled\.csv line 4: timestamp '2014-01-01 01:00:00' is earlier "
                                         r"than '2014-01-01 03:00:00' on line 3"):
        load_trace(path, unit="requests/s")
    s, report = load_trace(path, unsorted="sort", unit="requests/s")
    assert s.index.is_monotonic_increasing and s.tolist() == [1, 2, 3, 4, 5, 6]
    assert report.out_of_order == 1 and any("sorted" in r and "line 4" in r for r in report.repairs)


def test_text_value(tmp_path):
    text = replace_line(nab_rows([1, 2, 3, 4]), 4, "2014-01-01 02:00:00,abc")
    path = write(tmp_path, text, "text.csv")
    with pytest.raises(ValueError, match=r"^text\.csv line 4: value 'abc' is not a number"):
        load_trace(path, unit="requests/s")
    s, report = load_trace(path, non_numeric="drop", unit="requests/s")
    assert len(s) == 3 and pd.Timestamp("2014-01-01 02:00") not in s.index
    assert any("dropped 1 row" in r and "line 4 'abc'" in r for r in report.repairs)
    assert len(report.gaps) == 1 and report.gaps[0].missing == 1  # the dropped row leaves a reported gap
    s2, report2 = load_trace(path, non_numeric="drop", gaps="interpolate", unit="requests/s")
    assert s2.loc["2014-01-01 02:00"] == pytest.approx(3.0) and len(report2.repairs) == 2


@pytest.mark.parametrize("bad", ["", "nan", "inf", "1,5"])
def test_other_non_numbers(tmp_path, bad):
    text = nab_rows([1, 2, 3]).replace("00:00,2\n", f'00:00,"{bad}"\n')
    with pytest.raises(ValueError, match=rf"line 3: value '{bad}' is not a number"):
        load_trace(write(tmp_path, text, "x.csv"), unit="requests/s")


def test_duplicated_hour(tmp_path):
    text = msft_rows([10, 20, 30, 40])
    lines = text.splitlines(keepends=True)
    text = "".join(lines[:3] + [lines[2].replace(",20,", ",26,")] + lines[3:])  # hour 01:00 twice
    path = write(tmp_path, text, "dup.csv")
    with pytest.raises(ValueError, match=r"^dup\.csv line 4: duplicate timestamp '2017-11-01T01:00:00Z' "
                                         r"\(first on line 3\)"):
        load_trace(path, unit="requests/s")
    mean, report = load_trace(path, duplicates="mean", unit="requests/s")
    assert mean.loc["2017-11-01 01:00"] == pytest.approx(23.0) and len(mean) == 4
    assert report.rows == 5 and report.rows_out == 4
    assert report.duplicates[0].lines == (3, 4)
    assert any("merged 1 duplicated" in r and "lines 3, 4" in r for r in report.repairs)
    first, _ = load_trace(path, duplicates="first", unit="requests/s")
    assert first.loc["2017-11-01 01:00"] == 20


def test_negative_value(tmp_path):
    text = replace_line(nab_rows([1, 2, 3]), 3, "2014-01-01 01:00:00,-2.5")
    path = write(tmp_path, text, "neg.csv")
    with pytest.raises(ValueError, match=r"^neg\.csv line 3: value '-2\.5' is negative"):
        load_trace(path, unit="requests/s")
    clipped, report = load_trace(path, negative="clip", unit="requests/s")
    assert clipped.tolist() == [1, 0, 3] and report.negatives == 1
    assert any("clipped to 0" in r and "lines 3" in r for r in report.repairs)
    nan, report = load_trace(path, negative="nan", unit="requests/s")
    assert np.isnan(nan.iloc[1]) and any("NaN" in r for r in report.repairs)


@pytest.mark.parametrize("header, missing", [("timestamp,val", "value"), ("time,value", "timestamp"),
                                             ("TimeStamp,Label", "value")])
def test_missing_column(tmp_path, header, missing):
    path = write(tmp_path, f"{header}\n2014-01-01 00:00:00,1\n", "cols.csv")
    with pytest.raises(ValueError, match=rf"^cols\.csv line 1: header '{header}' has no '{missing}' column"):
        load_trace(path, unit="requests/s")


@pytest.mark.parametrize("content, message", [
    ("", r"^empty\.csv: file is empty"),
    ("\n \r\n", r"^empty\.csv: file is empty"),
    ("timestamp,value\n", r"^empty\.csv: no data rows after the header \(line 1\)"),
])
def test_empty_files(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        load_trace(write(tmp_path, content, "empty.csv"), unit="requests/s")


@pytest.mark.parametrize("stamp", ["2014-13-45 00:00:00", "yesterday", "2014-01-01T02:00:00Z"])
def test_unparsable_timestamp(tmp_path, stamp):
    text = replace_line(nab_rows([1, 2, 3, 4]), 4, f"{stamp},3")
    with pytest.raises(ValueError, match=rf"^ts\.csv line 4: timestamp '{stamp}' is not a time like"):
        load_trace(write(tmp_path, text, "ts.csv"), unit="requests/s")


def test_naive_stamp_in_utc_file(tmp_path):
    text = msft_rows([1, 2, 3]).replace('"2017-11-01T01:00:00Z"', '"2017-11-01 01:00:00"')
    with pytest.raises(ValueError, match=r"line 3: timestamp '2017-11-01 01:00:00' is not an ISO 8601 time "
                                         r"with a UTC designator"):
        load_trace(write(tmp_path, text), unit="requests/s")


def test_wrong_field_count_and_bad_label(tmp_path):
    text = msft_rows([1, 2, 3])
    with pytest.raises(ValueError, match=r"^api-01\.csv line 3: expected 3 fields"):
        load_trace(write(tmp_path, text.replace(",2,0\n", ",2\n")), unit="requests/s")
    with pytest.raises(ValueError, match=r"^api-01\.csv line 4: label 'yes' is not 0 or 1"):
        load_trace(write(tmp_path, text.replace(",3,0\n", ",3,yes\n")), unit="requests/s")


def test_first_problem_in_file_order_is_reported(tmp_path):
    text = nab_rows([1, 2, 3, 4, 5])
    text = replace_line(text, 5, "2014-01-01 03:00:00,oops")
    text = replace_line(text, 3, "bad-stamp,2")
    with pytest.raises(ValueError, match=r"line 3: timestamp 'bad-stamp'"):
        load_trace(write(tmp_path, text, "order.csv"), unit="requests/s")


def test_gaps_keep_interpolate_error(tmp_path):
    text = nab_rows([0, 1, 2, 3, 4, 5, 6, 7])
    lines = text.splitlines(keepends=True)
    path = write(tmp_path, "".join(lines[:4] + lines[6:]), "gap.csv")  # drops 03:00 and 04:00
    kept, report = load_trace(path, unit="requests/s")
    assert len(kept) == 6 and report.repairs == []
    (gap,) = report.gaps
    assert (gap.after, gap.before, gap.missing, gap.line) == (
        pd.Timestamp("2014-01-01 02:00"), pd.Timestamp("2014-01-01 05:00"), 2, 5)
    assert "2 missing step" in report.summary()
    filled, report = load_trace(path, gaps="interpolate", unit="requests/s")
    assert filled.tolist() == pytest.approx([0, 1, 2, 3, 4, 5, 6, 7])
    assert filled.index.freqstr == "h" and "interpolated 2 missing step(s)" in report.repairs[0]
    with pytest.raises(ValueError, match=r"^gap\.csv line 5: gap of 3 h after 2014-01-01 02:00:00"):
        load_trace(path, gaps="error", unit="requests/s")


def test_interpolation_leaves_nan_values_alone(tmp_path):
    text = nab_rows([1, -1, 3, 4, 5])
    lines = text.splitlines(keepends=True)
    path = write(tmp_path, "".join(lines[:4] + lines[5:]), "mix.csv")
    s, _ = load_trace(path, negative="nan", gaps="interpolate", unit="requests/s")
    assert np.isnan(s.loc["2014-01-01 01:00"]) and s.loc["2014-01-01 03:00"] == pytest.approx(4.0)


def test_policy_arguments_are_checked(tmp_path):
    path = write(tmp_path, nab_rows([1, 2]), "ok.csv")
    for arg in ("unsorted", "duplicates", "gaps", "negative", "non_numeric"):
        with pytest.raises(ValueError, match=rf"^{arg}='bogus': must be one of"):
            load_trace(path, **{arg: "bogus"}, unit="requests/s")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_trace(tmp_path / "absent.csv", unit="requests/s")


# ================================================================================================ real data
API01 = "msft-cloud-monitoring/ecommerce-api-incoming-rps/api-01.csv"


@requires_real_data
def test_api01_strict_stops_at_the_dst_duplicate():
    with pytest.raises(ValueError, match=r"^api-01\.csv line 100: duplicate timestamp '2017-11-05T01:00:00Z' "
                                         r"\(first on line 99\)"):
        load_trace(REAL_DATA / API01)


@requires_real_data
def test_api01_missing_hour_reported_not_repaired():
    s, report = load_trace(REAL_DATA / API01, duplicates="mean")
    assert report.rows == 6192 and len(s) == 6191
    assert [(g.after, g.before, g.missing) for g in report.gaps] == [
        (pd.Timestamp("2018-03-11 01:00", tz="UTC"), pd.Timestamp("2018-03-11 03:00", tz="UTC"), 1)]
    assert not any("interpolat" in r for r in report.repairs)
    assert pd.Timestamp("2018-03-11 02:00", tz="UTC") not in s.index


@requires_real_data
def test_api01_regular_grid():
    frame, report = load_frame(REAL_DATA / API01, **REGULAR_GRID)
    s = frame["value"]
    assert len(s) == 6192 and s.index.freqstr == "h" and str(s.index.tz) == "UTC"
    assert s.index[0] == pd.Timestamp("2017-11-01", tz="UTC") and s.index[-1] == pd.Timestamp(
        "2018-07-16 23:00", tz="UTC")
    assert len(report.repairs) == 2 and report.labelled == 120
    assert 71 < s.mean() < 73.5 and 385 < s.max() < 395
    black_friday = frame.loc["2017-11-24"]
    assert len(black_friday) == 24 and black_friday["label"].sum() == 6
    assert black_friday["value"].mean() > 1.25 * frame.loc["2017-11-20":"2017-11-23", "value"].mean()


@requires_real_data
def test_demand_real():
    with pytest.raises(ValueError, match="line 100: duplicate timestamp"):
        workloads.demand(data_dir=REAL_DATA)
    w = workloads.demand(data_dir=REAL_DATA, **REGULAR_GRID)
    assert w.is_real and w.units == "requests/s" and len(w.series) == 6192
    assert w.label == "real: Microsoft cloud-monitoring e-commerce API (api-01.csv, MIT)"
    assert [p.name for p in w.files] == ["api-01.csv"]
    assert len(w.anomalies) == 120 and (w.anomalies.normalize() == pd.Timestamp("2017-11-24", tz="UTC")).any()
    assert any("2018-03-11" in r for r in w.report.repairs)


@requires_real_data
def test_nab_dst_duplicates():
    path = REAL_DATA / datasets.REGISTRY["nab-ec2-disk-write-1ef3de"].relpath
    with pytest.raises(ValueError, match=r"^ec2_disk_write_bytes_1ef3de\.csv line 2121: duplicate timestamp "
                                         r"'2014-03-09 03:00:00' \(first on line 2120\)"):
        load_trace(path)
    s, report = load_trace(path, duplicates="first")
    assert report.rows == 4730 and len(s) == 4730 - 11 and s.index.is_unique
    assert report.duplicates[0].lines == tuple(range(2120, 2132))
    assert [(g.after, g.missing) for g in report.gaps] == [(pd.Timestamp("2014-03-09 01:59"), 11)]


@requires_real_data
def test_nab_backwards_step():
    path = REAL_DATA / datasets.REGISTRY["nab-machine-temperature"].relpath
    with pytest.raises(ValueError, match=r"line 10151: timestamp '2014-01-07 02:00:00' is earlier than "
                                         r"'2014-01-07 02:55:00' on line 10150"):
        load_trace(path)
    with pytest.raises(ValueError, match="duplicate timestamp '2014-01-07 02:00:00'"):
        load_trace(path, unsorted="sort")  # sorting exposes the repeated hour
    s, report = load_trace(path, unsorted="sort", duplicates="mean")
    assert s.index.is_monotonic_increasing and s.index.is_unique and len(s) == 22695 - 12
    assert report.out_of_order == 1 and len(report.duplicates) == 12 and len(report.repairs) == 2


@requires_real_data
def test_nab_crlf_and_labels():
    ds = datasets.REGISTRY["nab-rogue-key-hold"]
    raw = (REAL_DATA / ds.relpath).read_bytes()
    assert b"\r\n" in raw
    s, report = load_trace(REAL_DATA / ds.relpath)
    assert report.rows == 1882 == len(s) and len(report.gaps) == 91
    expected = [float(line.split(b",")[1]) for line in raw.splitlines()[1:4]]
    assert s.iloc[:3].tolist() == expected
    taxi = workloads.demand("nab-nyc-taxi", data_dir=REAL_DATA)
    assert taxi.is_real and len(taxi.series) == 10320 and taxi.series.index.freqstr == "30min"
    assert taxi.series.index.tz is None and len(taxi.anomalies) == 5
    windows = workloads.nab_windows("nab-nyc-taxi", data_dir=REAL_DATA)
    assert len(windows) == 5 and (windows["end"] > windows["start"]).all()


# ================================================================================================ synthetic
def test_synthetic_is_deterministic_and_seeded():
    a = workloads.synthetic_demand(seed=11, periods=500)
    b = workloads.synthetic_demand(seed=11, periods=500)
    c = workloads.synthetic_demand(seed=12, periods=500)
    assert a.equals(b) and not a.equals(c)
    assert str(a.index.tz) == "UTC" and a.index.freqstr == "h" and (a > 0).all()


def test_synthetic_scale_matches_real_series():
    s = workloads.synthetic_demand()
    assert len(s) == 6192 and s.index[-1] == pd.Timestamp("2018-07-16 23:00", tz="UTC")
    assert 69 < s.mean() < 75 and 300 < s.max() < 480
    for seed in range(4):
        assert 66 < workloads.synthetic_demand(seed=seed).mean() < 78


def test_synthetic_without_noise_has_mean_base_rps():
    s = workloads.synthetic_demand(base_rps=50, noise_sd=0, daily_noise_sd=0, events=(), trend_per_year=0,
                                   periods=24 * 7 * 8)
    assert s.mean() == pytest.approx(50, rel=2e-3)  # profiles are normalised to mean 1 over whole weeks


def test_synthetic_seasonality_trend_and_events():
    s = workloads.synthetic_demand()
    hourly = s.groupby(s.index.hour).mean()
    assert hourly.loc[18:22].mean() > 1.8 * hourly.loc[5:9].mean()
    weekend = s[s.index.day_of_week >= 5].mean()
    weekday = s[s.index.day_of_week < 5].mean()
    assert weekend > 1.1 * weekday
    monthly = s.resample("MS").mean()
    assert monthly.iloc[-1] > 1.1 * monthly.iloc[0]

    def black_friday_ratio(series):  # Fri-Sun of Black Friday vs the same days one week before and after
        bf = series["2017-11-24":"2017-11-26"].mean()
        ref = pd.concat([series["2017-11-17":"2017-11-19"], series["2017-12-01":"2017-12-03"]]).mean()
        return bf / ref

    flat = workloads.synthetic_demand(events=())  # same seed, same noise, no events
    assert black_friday_ratio(s) > 1.1
    assert black_friday_ratio(s) / black_friday_ratio(flat) == pytest.approx(1.25, rel=1e-4)
    effect = s / flat
    assert effect["2017-11-24":"2017-11-26"].to_numpy() == pytest.approx(1.25, rel=1e-4)
    assert effect["2017-12-25"].to_numpy() == pytest.approx(2.2, rel=1e-4)
    assert effect["2018-01-08":"2018-02-28"].to_numpy() == pytest.approx(1.0, rel=1e-4)
    dip = workloads.synthetic_demand(events=[("2017-12-25", 0.5, 24)])
    assert dip["2017-12-25"].mean() < 0.7 * dip["2017-12-18"].mean()
    labelled = workloads.synthetic_demand(with_labels=True)
    assert labelled.loc["2017-11-24", "label"].all() and not labelled.loc["2017-11-21", "label"].any()


@pytest.mark.parametrize("kwargs, name", [
    ({"periods": 0}, "periods"), ({"base_rps": -1}, "base_rps"), ({"noise_ar": 1.0}, "noise_ar"),
    ({"seed": 1.5}, "seed"), ({"events": [("2017-11-24", -2, 24)]}, r"events\[0\]"),
    ({"weekly_factors": (1, 1, 1)}, "weekly_factors"), ({"freq": "fortnightly"}, "freq"),
    ({"trend_per_year": 10}, "trend_per_year"),
])
def test_synthetic_rejects_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=rf"{name}="):
        workloads.synthetic_demand(**kwargs)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SYNTHETIC_ROWS = {"ecommerce-api-rps": 6192, "mongodb-app-rps": 15840}


@pytest.mark.parametrize("name", sorted(workloads.SYNTHETIC_DEFAULTS))
def test_committed_synthetic_matches_sha256sums(name):
    committed = paths.DATA_SYNTHETIC / workloads.SYNTHETIC_DEFAULTS[name]
    sums = workloads.synthetic_checksums()
    assert sums[committed.name] == _sha(committed)
    # the strict loader reads it: same format as the Microsoft file
    s, report = load_trace(committed, unit="requests/s")
    assert report.rows == SYNTHETIC_ROWS[name] and report.clean
    assert report.labelled > 0 or name == "mongodb-app-rps"      # the real MongoDB file has no labels either


def test_regenerated_synthetic_is_byte_identical(tmp_path):
    from analysis import consistency

    written = workloads.write_synthetic_defaults(tmp_path)
    assert [p.name for p in written] == [*workloads.SYNTHETIC_DEFAULTS.values(), "SHA256SUMS"]
    for name in workloads.SYNTHETIC_DEFAULTS.values():
        assert _sha(tmp_path / name) == workloads.synthetic_checksums()[name]
    assert workloads.synthetic_checksums(tmp_path) == workloads.synthetic_checksums()
    s, _ = load_trace(tmp_path / workloads.SYNTHETIC_FILE, unit="requests/s")
    assert np.array_equal(s.to_numpy(), workloads.synthetic_demand().to_numpy())
    s, _ = load_trace(tmp_path / workloads.SYNTHETIC_MONGODB_FILE, unit="requests/s")
    assert np.array_equal(s.to_numpy(), consistency.synthetic_query_rate().to_numpy())


def test_demand_falls_back_to_synthetic(no_real_data):
    w = workloads.demand()
    assert not w.is_real and w.units == "requests/s"
    assert w.label == "synthetic default: data/synthetic/ecommerce_demand.csv (no real data found)"
    assert w.files == [paths.DATA_SYNTHETIC / workloads.SYNTHETIC_FILE]
    assert len(w.series) == 6192 and w.series.index.freqstr == "h" and w.report.repairs == []
    assert (w.anomalies.normalize() == pd.Timestamp("2017-11-24", tz="UTC")).any()
    with pytest.raises(FileNotFoundError, match="nab-nyc-taxi.*no synthetic default"):
        workloads.demand("nab-nyc-taxi")
    with pytest.raises(ValueError, match="unknown dataset"):
        workloads.demand("no-such-dataset")
    with pytest.raises(ValueError, match="label file"):
        workloads.demand("nab-labels")


@pytest.mark.parametrize("name", sorted(workloads.SYNTHETIC_DEFAULTS))
def test_demand_rejects_a_tampered_synthetic_default(no_real_data, tmp_path, monkeypatch, name):
    folder = tmp_path / "synthetic"
    shutil.copytree(paths.DATA_SYNTHETIC, folder)
    target = folder / workloads.SYNTHETIC_DEFAULTS[name]
    lines = target.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(",", ",1", 1)  # still a valid row, but not the recorded bytes
    target.write_text("".join(lines))
    monkeypatch.setattr(paths, "DATA_SYNTHETIC", folder)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        workloads.demand(name)


# ------------------------------------------------------------------------------ named data locations
# When the user names a data location (data_dir or KIT_DATA_DIR) and the dataset is not there, demand()
# raises an error naming the expected file instead of returning the synthetic default.
API_REL = datasets.get("ecommerce-api-rps").relpath


def _demand_error(data_dir, exc=FileNotFoundError) -> str:
    with pytest.raises(exc) as info:
        workloads.demand("ecommerce-api-rps", data_dir, **REGULAR_GRID)
    return str(info.value)


def test_demand_in_an_empty_named_folder_is_an_error(no_real_data, tmp_path):
    msg = _demand_error(tmp_path)
    assert str(tmp_path / API_REL) in msg and "data_dir=" in msg


def test_demand_with_the_file_one_level_too_deep_is_an_error(no_real_data, tmp_path):
    deep = tmp_path / "copy" / API_REL
    deep.parent.mkdir(parents=True)
    shutil.copy(paths.DATA_SYNTHETIC / workloads.SYNTHETIC_FILE, deep)
    msg = _demand_error(tmp_path)
    assert str(tmp_path / API_REL) in msg and str(deep) in msg


def test_demand_where_the_csv_is_a_directory_is_an_error(no_real_data, tmp_path):
    (tmp_path / API_REL).mkdir(parents=True)
    msg = _demand_error(tmp_path, ValueError)
    assert f"{tmp_path / API_REL} is a directory" in msg


def test_demand_in_etc_is_an_error(no_real_data):
    assert f"/etc/{API_REL}" in _demand_error("/etc")


def test_demand_with_kit_data_dir_lacking_the_file_is_an_error(no_real_data, tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV_VAR, str(tmp_path))
    msg = _demand_error("")
    assert paths.DATA_ENV_VAR in msg and str(tmp_path / API_REL) in msg


def test_nab_labels_missing_from_a_named_folder_is_an_error(no_real_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="combined_labels.json"):
        workloads.nab_anomalies("nab-nyc-taxi", tmp_path)


def test_synthetic_parameter_messages_show_plain_numbers():
    with pytest.raises(ValueError, match=r"^base_rps=-20\.0: must be") as info:
        workloads.synthetic_demand(base_rps=np.float64(-20.0))
    assert "np." not in str(info.value)
    with pytest.raises(ValueError, match=r"multiplier=-2\.0") as info:
        workloads.synthetic_demand(events=[("2017-11-02", np.float64(-2.0), np.int64(3))])
    assert "np." not in str(info.value)
    with pytest.raises(ValueError, match=r"^gaps='fill': must be one of"):
        workloads.load_trace(paths.DATA_SYNTHETIC / workloads.SYNTHETIC_FILE, gaps=np.str_("fill"),
                             unit="requests/s")
