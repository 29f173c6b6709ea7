"""NAB scoring rules on hand-made series, and the rescoring of numenta's published detections."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import nab_scoring as ns

STANDARD = {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0, "tnWeight": 1.0}
DATA = Path(os.environ.get("KIT_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
HAVE_NAB = (DATA / "nab" / "results" / "numenta_published.json").is_file()
needs_nab = pytest.mark.skipif(not HAVE_NAB, reason=f"NAB corpus not found under {DATA} (set KIT_DATA_DIR)")


def _series(n=100, start="2020-01-01", step="5min"):
    return pd.date_range(start, periods=n, freq=step)


def _one(n, windows, hits, cost=STANDARD, probation=0.0):
    ts = _series(n)
    rows = ns.sweep_rows(ts, [(ts[a], ts[b]) for a, b in windows], probation_percent=probation)
    det = np.zeros(n, dtype=bool)
    det[list(hits)] = True
    return ns.file_score(rows, det, cost)


def test_scaled_sigmoid_published_values():
    assert ns.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert ns.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert ns.scaled_sigmoid(0.0) == 0.0
    assert ns.scaled_sigmoid(3.5) == -1.0


def test_detection_at_window_start_earns_full_tp_weight():
    assert _one(100, [(40, 49)], [40])["score"] == pytest.approx(1.0, abs=1e-15)


def test_late_detection_in_window_earns_less():
    early, late = _one(100, [(40, 49)], [42])["score"], _one(100, [(40, 49)], [49])["score"]
    # last row of the window: position -1/10
    assert late == pytest.approx(float(ns.scaled_sigmoid(-0.1) / ns.scaled_sigmoid(-1.0)))
    assert 0 < late < early < 1


def test_window_counts_once_best_row():
    assert _one(100, [(40, 49)], [45, 41, 48])["score"] == pytest.approx(_one(100, [(40, 49)], [41])["score"])


def test_missed_window_costs_fn_weight():
    assert _one(100, [(40, 49)], [])["score"] == -1.0
    assert _one(100, [(40, 49)], [], cost={**STANDARD, "fnWeight": 2.0})["score"] == -2.0


def test_detection_far_past_window_is_full_false_positive():
    # 40 rows after a 10-row window: position 40/9 > 3 -> -1, weighted by fpWeight; plus the missed window
    assert _one(100, [(40, 49)], [89])["score"] == pytest.approx(-1.0 - 0.11)
    # just after the window: a mild penalty from the sigmoid
    near = _one(100, [(40, 49)], [50])["score"]
    assert near == pytest.approx(-1.0 + 0.11 * float(ns.scaled_sigmoid(1 / 9)))
    # before any window: full fpWeight
    assert _one(100, [(40, 49)], [10])["score"] == pytest.approx(-1.11)


def test_probation_rows_are_not_scored():
    # 15% of 100 rows = 15 rows of probation: a detection at row 10 costs nothing, at row 20 it costs fpWeight
    assert _one(100, [(40, 49)], [10], probation=0.15)["score"] == -1.0
    assert _one(100, [(40, 49)], [20], probation=0.15)["score"] == pytest.approx(-1.11)
    assert ns.probation_length(100) == 15
    assert ns.probation_length(10000) == 750


def test_window_ranges_keep_touching_windows_apart_and_skip_probation():
    from analysis import alerting
    ts = _series(20)
    # probation: 15% of 20 rows = rows 0..2; the first window reaches into it; the next two touch
    rows = ns.sweep_rows(ts, [(ts[1], ts[4]), (ts[8], ts[10]), (ts[11], ts[13]), (ts[16], ts[17])],
                         probation_percent=0.15)
    assert ns.window_ranges(rows) == [(3, 4), (8, 10), (11, 13), (16, 17)]
    assert alerting.incident_ranges(rows.window >= 0) == [(3, 4), (8, 13), (16, 17)]   # would merge them
    assert ns.window_ranges(ns.sweep_rows(ts, [])) == []
    with pytest.raises(ValueError, match="rows must be a FileRows"):
        ns.window_ranges(rows.window)


def test_threshold_sweep_matches_direct_scoring():
    rng = np.random.default_rng(3)
    ts = _series(400)
    files, scores = [], []
    for k in range(3):
        w = [(ts[100 + 50 * k], ts[119 + 50 * k]), (ts[300], ts[320])]
        files.append(ns.sweep_rows(ts, w, name=f"f{k}"))
        scores.append(np.round(rng.random(400), 2))
    sweep = ns.threshold_sweep(files, scores, STANDARD)
    for thr, sc in zip(sweep["threshold"].iloc[::7], sweep["score"].iloc[::7]):
        assert sc == pytest.approx(ns.corpus_raw_score(files, scores, STANDARD, thr), abs=1e-9)
    thr, best = ns.optimise_threshold(files, scores, STANDARD)
    assert best == pytest.approx(sweep["score"].max())
    assert best >= ns.corpus_raw_score(files, scores, STANDARD, 0.5)


def test_bad_inputs_name_file_and_row():
    ts = _series(10)
    data = pd.DataFrame({"timestamp": ts, "value": np.arange(10.0)})
    det = pd.DataFrame({"timestamp": ts.astype(str), "anomaly_score": np.full(10, 0.5)})
    det.loc[4, "timestamp"] = "2030-01-01 00:00:00"
    with pytest.raises(ValueError, match=r"f\.csv: row 4 timestamp"):
        ns.check_detections(det, data, "f.csv")
    det = pd.DataFrame({"timestamp": ts, "anomaly_score": np.full(10, 0.5)})
    det.loc[7, "anomaly_score"] = 1.5
    with pytest.raises(ValueError, match=r"f\.csv: row 7 anomaly_score 1\.5 is outside \[0, 1\]"):
        ns.check_detections(det, data, "f.csv")
    with pytest.raises(ValueError, match="profile='nope' is unknown"):
        ns._cost("nope", {"standard": STANDARD})
    with pytest.raises(ValueError, match="window end .* is not a timestamp"):
        ns.sweep_rows(ts, [(ts[2], pd.Timestamp("2031-01-01"))], name="g.csv")
    with pytest.raises(ValueError, match=r"g\.csv: window 1 .* covers one row"):
        ns.sweep_rows(ts, [(ts[1], ts[2]), (ts[5], ts[5])], name="g.csv")
    with pytest.raises(ValueError, match=r"g\.csv: window 0 .* ends before it starts"):
        ns.sweep_rows(ts, [(ts[6], ts[4])], name="g.csv")


@pytest.fixture(scope="module")
def corpus():
    return ns.load_corpus(str(DATA))


@needs_nab
def test_rescoring_numenta_gives_published_scores(corpus):
    assert len(corpus.keys) == 58 and corpus.n_windows_labelled == 116
    published, thresholds = ns.numenta_published(str(DATA))
    table = ns.score_detector(corpus, ns.numenta_detections(corpus), thresholds)
    for profile, value in published.items():
        assert table.loc[profile, "score"] == pytest.approx(value, abs=1e-6), profile


@needs_nab
def test_sweep_threshold_at_least_as_good_as_published(corpus):
    """The published thresholds came from NAB's older optimiser; the exhaustive sweep of the same rules can only
    match or beat them (it reaches the same standard and low-FN scores, and a higher low-FP score)."""
    published, _ = ns.numenta_published(str(DATA))
    table = ns.score_detector(corpus, ns.numenta_detections(corpus))
    for profile, value in published.items():
        assert table.loc[profile, "score"] >= value - 1e-9, profile
    assert table.loc["standard", "score"] == pytest.approx(published["standard"], abs=1e-6)
    assert math.isfinite(table["score"].sum())


# ------------------------------------------------------------------ synthetic default corpus (no NAB data)

def test_synthetic_corpus_is_deterministic():
    a, b, c = ns.synthetic_corpus(3, 4, 2016), ns.synthetic_corpus(3, 4, 2016), ns.synthetic_corpus(4, 4, 2016)
    assert a.keys == b.keys and a.windows == b.windows and a.source == "synthetic (seed 3)"
    for k in a.keys:
        pd.testing.assert_frame_equal(a.data[k], b.data[k])
    assert not np.array_equal(a.data[a.keys[0]]["value"], c.data[c.keys[0]]["value"])   # the seed matters


def test_synthetic_corpus_is_well_formed_like_nab():
    corpus = ns.synthetic_corpus(0, 5, 4032)
    assert corpus.synthetic and corpus.root is None and len(corpus.keys) == 5
    assert corpus.profiles == ns.NAB_PROFILES
    assert corpus.n_windows_labelled == sum(len(w) for w in corpus.windows.values())
    probation = ns.probation_length(4032)
    for key in corpus.keys:
        df, rows, windows = corpus.data[key], corpus.rows[key], corpus.windows[key]
        assert list(df.columns) == ["timestamp", "value"] and len(df) == 4032
        assert (df["timestamp"].diff().dropna() == pd.Timedelta("5min")).all()
        assert 2 <= len(windows) <= 3 and rows.n_windows == len(windows)   # every window is after probation
        assert (rows.window[: int(probation)] == -2).all() and (rows.window[int(probation):] != -2).all()
        # NAB's sizing: int(10% of the rows / anomalies) rows, centred, inside the file, not overlapping
        width = int(0.10 * 4032 / len(windows))
        ends = [(df.index[df["timestamp"] == pd.Timestamp(a)][0], df.index[df["timestamp"] == pd.Timestamp(b)][0])
                for a, b in windows]
        for (lo, hi), (lo2, _) in zip(ends, ends[1:] + [(4032, None)]):
            assert probation <= lo and hi - lo == 2 * (width // 2) and hi < lo2
            assert ((rows.window == rows.window[lo]).sum() == hi - lo + 1)


def test_synthetic_corpus_scores_perfect_100_and_null_0():
    corpus = ns.synthetic_corpus(1, 3, 2016)
    null = {k: np.zeros(len(d)) for k, d in corpus.data.items()}
    perfect = {}
    for k, rows in corpus.rows.items():        # fire on the first row of every window only
        s = np.zeros(rows.window.size)
        for w in np.unique(rows.window[rows.window >= 0]):
            s[np.flatnonzero(rows.window == w)[0]] = 1.0
        perfect[k] = s
    assert ns.score_detector(corpus, perfect)["score"].to_numpy() == pytest.approx(100.0)
    assert ns.score_detector(corpus, null)["score"].to_numpy() == pytest.approx(0.0)
    # a detector that sees the injected anomalies beats null: the anomalies are detectable
    from analysis import anomaly
    sd = {k: anomaly.rolling_gaussian_scores(d["value"].to_numpy(), window=288) for k, d in corpus.data.items()}
    assert ns.score_detector(corpus, sd).loc["standard", "score"] > 0


def test_synthetic_corpus_bad_parameters():
    for kw, msg in ((dict(seed=-1), "seed=-1"), (dict(n_files=0), "n_files=0"), (dict(length=100), "length=100")):
        with pytest.raises(ValueError, match=msg):
            ns.synthetic_corpus(**kw)


def test_load_corpus_falls_back_to_synthetic_only_without_a_named_location(no_real_data, tmp_path):
    corpus = ns.load_corpus("", seed=7, n_files=2, length=2016)
    assert corpus.source == "synthetic (seed 7)" and corpus.keys == ns.synthetic_corpus(7, 2, 2016).keys
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no NAB corpus under data_dir="):
        ns.load_corpus(str(empty))


def test_load_corpus_named_by_kit_data_dir_without_nab_is_an_error(no_real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no NAB corpus"):
        ns.load_corpus("")


@needs_nab
def test_embedded_profiles_equal_nab_profiles_json():
    assert ns.load_profiles(DATA / "nab" / "profiles.json") == ns.NAB_PROFILES


@needs_nab
def test_real_corpus_is_used_when_present():
    corpus = ns.load_corpus(str(DATA), keys=["realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv"])
    assert corpus.source == "real" and not corpus.synthetic and corpus.windows[corpus.keys[0]]
