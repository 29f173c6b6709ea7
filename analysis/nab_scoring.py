"""The Numenta Anomaly Benchmark (NAB v1.1) scoring rules, reimplemented from their published definition.

Rules (numenta/NAB ``nab/sweeper.py``, ``nab/optimizer.py``, ``nab/runner.py`` at commit ea702d7):

- Probation: the first ``min(floor(0.15 * rows), 0.15 * 5000)`` rows of each file (at most 750) are not scored.
- A row at index ``i`` inside a labelled window ``[left, right]`` (width ``w = right - left + 1`` rows) is worth
  ``tpWeight * S(-(right - i + 1) / w) / S(-1)`` if detected, where ``S(x) = 2 / (1 + exp(5 x)) - 1`` is the
  scaled sigmoid (and ``-1`` for ``x > 3``): a detection on the first row of a window earns exactly ``tpWeight``.
  A window counts once: its best detected row, or ``-fnWeight`` when no row of it is detected.
- A detected row outside every window is a false positive worth ``fpWeight * S(|i - right_prev| / (w_prev - 1))``
  relative to the previous window (``-fpWeight`` when no window precedes it).
- A row is detected when its anomaly score is ``>= threshold``; one threshold per detector and profile is chosen
  for the whole corpus by sweeping every distinct score (highest total wins; ties go to the higher threshold).
- Final score ``100 * (raw - null) / (perfect - null)``: ``perfect = tpWeight * windows in the label file``,
  ``null`` = the raw score of a detector that never fires (``-fnWeight`` per scored window).

All times here are row indices or pandas timestamps as in the NAB files; nothing is resampled.
"""
from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths

__all__ = [
    "PROBATION_PERCENT", "PROFILE_NAMES", "scaled_sigmoid", "probation_length", "load_profiles",
    "FileRows", "sweep_rows", "window_ranges", "file_score", "threshold_sweep", "corpus_raw_score", "NabCorpus",
    "load_corpus", "load_detections", "normalise", "score_detector", "optimise_threshold", "nab_root",
    "NAB_PROFILES", "WINDOW_PERCENT", "synthetic_corpus", "nab_windows",
]

PROBATION_PERCENT = 0.15
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
#: NAB v1.1 ``config/profiles.json`` cost matrices (a test compares them with the real file when present).
NAB_PROFILES = {
    "standard": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0},
}
#: NAB's labeller: all windows of a file together cover 10% of its rows (``nab/labeler.py``, windowSize=0.10).
WINDOW_PERCENT = 0.10


def scaled_sigmoid(position: float | np.ndarray) -> np.ndarray:
    """NAB's scaled sigmoid ``2 / (1 + exp(5 x)) - 1``, and -1 for ``x > 3`` (position in window widths)."""
    x = np.asarray(position, dtype=float)
    with np.errstate(over="ignore"):
        val = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x > 3.0, -1.0, val)


def probation_length(rows: int, probation_percent: float = PROBATION_PERCENT) -> float:
    """Rows at the start of a file that NAB does not score: ``min(floor(p * rows), p * 5000)``."""
    if rows < 0:
        raise ValueError(f"rows={rows} must be >= 0")
    return min(math.floor(probation_percent * rows), probation_percent * 5000)


def load_profiles(path: str | Path) -> dict[str, dict[str, float]]:
    """NAB's ``profiles.json`` as ``{profile: {"tpWeight", "fpWeight", "fnWeight", "tnWeight"}}``."""
    raw = json.loads(Path(path).read_text())
    return {name: dict(body["CostMatrix"]) for name, body in raw.items()}


def _cost(profile: str | dict, profiles: dict | None) -> dict:
    if isinstance(profile, dict):
        missing = {"tpWeight", "fpWeight", "fnWeight"} - set(profile)
        if missing:
            raise ValueError(f"profile cost matrix lacks {sorted(missing)}")
        return profile
    if profiles is None or profile not in profiles:
        known = sorted(profiles) if profiles else list(PROFILE_NAMES)
        raise ValueError(f"profile={profile!r} is unknown; known profiles: {known}")
    return profiles[profile]


@dataclass(frozen=True)
class FileRows:
    """Per-row scoring ingredients of one file (independent of the anomaly scores and threshold).

    ``window``: window number (0, 1, ...) of each row, -1 outside windows, -2 in probation (not scored).
    ``tp_unit``: ``S(position) / S(-1)`` of rows inside windows (multiply by tpWeight).
    ``fp_unit``: ``S(position past previous window)`` (or -1) of rows outside windows (multiply by fpWeight).
    """

    name: str
    window: np.ndarray
    tp_unit: np.ndarray
    fp_unit: np.ndarray
    n_windows: int  # windows with at least one scored row


def sweep_rows(timestamps, windows, name: str = "",
               probation_percent: float = PROBATION_PERCENT) -> FileRows:
    """Assign every row of one file to its window, probation or the outside (NAB's ``calcSweepScore``).

    ``timestamps``: the data file's timestamps, in file order. ``windows``: ``[(start, end), ...]`` whose
    limits must be timestamps of the file (NAB requires exact matches); a window is entered at the first row
    equal to its start and left at the row equal to its end.
    """
    ts = list(pd.to_datetime(pd.Series(list(timestamps))))
    n = len(ts)
    limits = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in windows]
    first_index: dict = {}
    for i, t in enumerate(ts):
        first_index.setdefault(t, i)
    for a, b in limits:
        for t, which in ((a, "start"), (b, "end")):
            if t not in first_index:
                raise ValueError(f"{name or 'file'}: window {which} {t} is not a timestamp of the data file")
    for j, (a, b) in enumerate(limits):
        width = first_index[b] - first_index[a] + 1
        if width < 2:   # NAB scores rows after a window by their distance over (width - 1)
            problem = "ends before it starts" if width < 1 else "covers one row"
            raise ValueError(f"{name or 'file'}: window {j} ({a} .. {b}) {problem}; NAB's scoring needs windows of "
                             "at least two rows")
    window = np.full(n, -1, dtype=np.int64)
    tp_unit = np.zeros(n)
    fp_unit = np.zeros(n)
    max_tp = float(scaled_sigmoid(-1.0))
    pending = list(limits)
    cur = None  # (number, right index, width)
    prev = None  # (right index, width)
    k = 0
    for i, t in enumerate(ts):
        if pending and t == pending[0][0]:
            a, b = pending.pop(0)
            right = first_index[b]
            cur = (k, right, float(right - first_index[a] + 1), b)
            k += 1
        if cur is not None:
            tp_unit[i] = float(scaled_sigmoid(-(cur[1] - i + 1) / cur[2])) / max_tp
            window[i] = cur[0]
        elif prev is None:
            fp_unit[i] = -1.0
        else:
            fp_unit[i] = float(scaled_sigmoid(abs(prev[0] - i) / (prev[1] - 1.0)))
        if cur is not None and t == cur[3]:
            prev = (i, cur[2])
            cur = None
    probation = probation_length(n, probation_percent)
    window[np.arange(n) < probation] = -2
    scored = np.unique(window[window >= 0])
    return FileRows(name=name, window=window, tp_unit=tp_unit, fp_unit=fp_unit, n_windows=int(scored.size))


def window_ranges(rows: FileRows) -> list[tuple[int, int]]:
    """Inclusive ``(first_row, last_row)`` of every scored window of one file, in window order (row indices).

    Rows in probation are left out (a window reaching into it starts at its first scored row); two windows that
    touch stay two ranges (``alerting.incident_ranges`` of ``window >= 0`` would merge them).
    """
    if not isinstance(rows, FileRows):
        raise ValueError(f"rows must be a FileRows (see sweep_rows), got {type(rows).__name__}")
    w = rows.window
    out = []
    for i in np.unique(w[w >= 0]):
        idx = np.flatnonzero(w == i)
        out.append((int(idx[0]), int(idx[-1])))
    return out


def file_score(rows: FileRows, detected: np.ndarray, cost: dict) -> dict:
    """Raw NAB score of one file for a boolean detection per row, with tp/fp/fn/tn row counts."""
    det = np.asarray(detected, dtype=bool)
    if det.shape != rows.window.shape:
        raise ValueError(f"{rows.name}: {det.size} detections for {rows.window.size} rows")
    scored = rows.window != -2
    inside = rows.window >= 0
    fp_rows = det & scored & ~inside
    score = float(cost["fpWeight"] * rows.fp_unit[fp_rows].sum())
    for w in np.unique(rows.window[inside]):
        hit = det & (rows.window == w)
        score += float(cost["tpWeight"] * rows.tp_unit[hit].max()) if hit.any() else -float(cost["fnWeight"])
    return {"score": score, "tp": int((det & inside).sum()), "fp": int(fp_rows.sum()),
            "fn": int((~det & inside).sum()), "tn": int((~det & scored & ~inside).sum())}


def threshold_sweep(rows_list: list[FileRows], scores_list: list[np.ndarray], cost: dict) -> pd.DataFrame:
    """Raw corpus score at every distinct anomaly score used as threshold (NAB's ``calcScoreByThreshold``).

    Returns a frame with columns ``threshold`` (first row 1.1: nothing detected) and ``score``, in decreasing
    threshold order; the score at threshold T counts every row with anomaly score >= T as detected.
    """
    win_ids, units, scores = [], [], []
    offset = 0
    for rows, s in zip(rows_list, scores_list):
        s = np.asarray(s, dtype=float)
        keep = rows.window != -2
        w = rows.window[keep]
        win_ids.append(np.where(w >= 0, w + offset, -1))
        units.append(np.where(w >= 0, cost["tpWeight"] * rows.tp_unit[keep], cost["fpWeight"] * rows.fp_unit[keep]))
        scores.append(s[keep])
        offset += int(rows.window.max(initial=-1)) + 1
    win = np.concatenate(win_ids) if win_ids else np.zeros(0, dtype=np.int64)
    unit = np.concatenate(units) if units else np.zeros(0)
    sc = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(-sc, kind="stable")
    win, unit, sc = win[order], unit[order], sc[order]
    n_win = len(np.unique(win[win >= 0]))
    base = -cost["fnWeight"] * n_win
    # increment of the total when each row becomes detected
    inc = np.where(win < 0, unit, 0.0)
    inwin = win >= 0
    if inwin.any():
        df = pd.DataFrame({"w": win[inwin], "u": unit[inwin]})
        best = df.groupby("w")["u"].cummax().to_numpy()
        prev_best = df.assign(b=best).groupby("w")["b"].shift(1).fillna(-cost["fnWeight"]).to_numpy()
        inc[inwin] = best - prev_best
    total = base + np.cumsum(inc)
    last_of_value = np.r_[sc[1:] != sc[:-1], True] if sc.size else np.zeros(0, dtype=bool)
    out = pd.DataFrame({"threshold": np.r_[1.1, sc[last_of_value]], "score": np.r_[base, total[last_of_value]]})
    return out


def optimise_threshold(rows_list, scores_list, cost) -> tuple[float, float]:
    """NAB's corpus-wide threshold: the swept threshold with the highest raw score (ties: the higher one)."""
    sweep = threshold_sweep(rows_list, scores_list, cost)
    best = int(np.argmax(sweep["score"].to_numpy()))
    return float(sweep["threshold"].iloc[best]), float(sweep["score"].iloc[best])


def corpus_raw_score(rows_list, scores_list, cost, threshold: float) -> float:
    """Sum over files of the raw score with detections ``anomaly score >= threshold``."""
    return float(sum(file_score(r, np.asarray(s) >= threshold, cost)["score"]
                     for r, s in zip(rows_list, scores_list)))


def normalise(raw: float, n_windows_scored: int, n_windows_labelled: int, cost: dict) -> float:
    """NAB's final score: 100 (raw - null) / (perfect - null)."""
    null = -cost["fnWeight"] * n_windows_scored
    perfect = cost["tpWeight"] * n_windows_labelled
    return 100.0 * (raw - null) / (perfect - null)


# ----------------------------------------------------------------------------------------------- corpus

def nab_root(data_dir: str = "") -> Path:
    """The ``nab/`` folder of the data root (``data_dir``, then KIT_DATA_DIR); error when absent."""
    root = paths.data_root(data_dir)
    if root is None or not (Path(root) / "nab" / "labels" / "combined_windows.json").is_file():
        raise FileNotFoundError(f"no NAB corpus under data_dir={data_dir!r} (set KIT_DATA_DIR or data_dir; "
                                "expected nab/labels/combined_windows.json)")
    return Path(root) / "nab"


@dataclass
class NabCorpus:
    """Data files of the NAB corpus with their window rows (``files`` keys like ``realKnownCause/nyc_taxi.csv``).

    ``source`` is ``"real"`` for NAB's files (``root`` their ``nab/`` folder) or ``"synthetic (seed S)"`` for
    :func:`synthetic_corpus` (``root`` None: nothing on disk). ``windows``: key -> ``[[start, end], ...]``
    timestamps as in ``combined_windows.json``.
    """

    root: Path | None
    data: dict  # key -> DataFrame(timestamp, value)
    rows: dict  # key -> FileRows
    n_windows_labelled: int
    profiles: dict
    windows: dict = field(default_factory=dict)
    source: str = "real"

    @property
    def keys(self) -> list[str]:
        return list(self.data)

    @property
    def synthetic(self) -> bool:
        return self.source.startswith("synthetic")


def load_corpus(data_dir: str = "", keys: list[str] | None = None, *, seed: int = 0, n_files: int = 6,
                length: int = 4032) -> NabCorpus:
    """Read the NAB data files (all labelled files, or ``keys``) with their windows and the profiles.

    When no location is named (``data_dir`` empty, ``KIT_DATA_DIR`` unset) and the default lookup finds no NAB
    data, returns the embedded default ``synthetic_corpus(seed, n_files, length)`` instead (``keys`` name real
    files and do not apply to it; check ``corpus.source``). A named location without NAB is FileNotFoundError.
    """
    root, named_by = paths.data_lookup(data_dir)
    if not named_by and (root is None or not (Path(root) / "nab" / "labels" / "combined_windows.json").is_file()):
        return synthetic_corpus(seed, n_files, length)
    root = nab_root(data_dir)
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    chosen = sorted(windows) if keys is None else list(keys)
    data, rows = {}, {}
    for key in chosen:
        if key not in windows:
            raise ValueError(f"file={key!r} has no entry in combined_windows.json")
        df = pd.read_csv(root / key)
        df["timestamp"] = pd.to_datetime(df["timestamp"])
        data[key] = df
        rows[key] = sweep_rows(df["timestamp"], windows[key], name=key)
    n_lab = sum(len(v) for v in windows.values())
    return NabCorpus(root=root, data=data, rows=rows, n_windows_labelled=n_lab,
                     profiles=load_profiles(root / "profiles.json"), windows={k: windows[k] for k in chosen})


def nab_windows(timestamps, anomaly_rows, window_percent: float = WINDOW_PERCENT) -> list[list[str]]:
    """NAB's labelled windows around anomaly rows: ``int(window_percent * rows / anomalies)`` rows wide, centred
    on each anomaly and clipped to the file (``nab/labeler.py``), as ``[[start, end], ...]`` timestamp strings."""
    ts = pd.to_datetime(pd.Series(list(timestamps)))
    n = len(ts)
    if not anomaly_rows:
        return []
    width = int(window_percent * n / len(anomaly_rows))
    out = []
    for i in sorted(anomaly_rows):
        if not 0 <= i < n:
            raise ValueError(f"anomaly row {i} is outside the file's {n} rows")
        lo, hi = max(0, i - width // 2), min(n - 1, i + width // 2)
        out.append([ts[lo].strftime("%Y-%m-%d %H:%M:%S.%f"), ts[hi].strftime("%Y-%m-%d %H:%M:%S.%f")])
    return out


_KINDS = ("spike", "level shift", "dropout", "noise burst")


def synthetic_corpus(seed: int = 0, n_files: int = 6, length: int = 4032) -> NabCorpus:
    """A deterministic NAB-like corpus built in memory: the kit's embedded default when NAB is absent.

    Each of ``n_files`` series has ``length`` rows at NAB's 5-min step (4032 rows = 14 days): a level, a daily
    sinusoid, AR(1) noise and 2-3 injected anomalies after probation, each one of: a spike (one row, +8 noise
    sd), a level shift (+5 sd for half a day), a dropout (the value falls to 0 for 2 h) or a noise burst (sd x6
    for 2 h). Windows are sized and placed as NAB's labeller does (:func:`nab_windows`); profiles are NAB's.
    Keys are ``synthetic/synthetic_NN_<kinds>.csv``; the same seed always gives the same corpus.
    """
    for name, v, lo in (("seed", seed, 0), ("n_files", n_files, 1), ("length", length, 1000)):
        if int(v) != v or v < lo:
            raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
    rng = np.random.default_rng(seed)
    day = 288
    ts = pd.date_range("2014-01-01", periods=length, freq="5min")
    data, rows, windows = {}, {}, {}
    for f in range(n_files):
        level, amp, sd = rng.uniform(20, 60), rng.uniform(5, 20), rng.uniform(1, 3)
        t = np.arange(length)
        eps = rng.normal(0, sd, length)
        noise = np.empty(length)
        noise[0] = eps[0]
        for i in range(1, length):          # AR(1), phi 0.5, stationary sd = sd / sqrt(1 - 0.25)
            noise[i] = 0.5 * noise[i - 1] + eps[i]
        x = level + amp * np.sin(2 * np.pi * (t / day + rng.uniform())) + noise
        k = int(rng.integers(2, 4))
        width = int(WINDOW_PERCENT * length / k)
        first = int(probation_length(length)) + width // 2 + 1
        last = length - width // 2 - day // 2 - 1
        # anomalies at least one window apart so windows never overlap
        slots = np.linspace(first, last, k + 1)
        onsets = [int(rng.integers(int(slots[j]), max(int(slots[j]) + 1, int(slots[j + 1]) - width)))
                  for j in range(k)]
        kinds = [str(rng.choice(_KINDS)) for _ in onsets]
        for i, kind in zip(onsets, kinds):
            if kind == "spike":
                x[i] += 8 * sd
            elif kind == "level shift":
                x[i:i + day // 2] += 5 * sd
            elif kind == "dropout":
                x[i:i + 24] = 0.0
            else:
                x[i:i + 24] += rng.normal(0, 6 * sd, min(24, length - i))
        key = f"synthetic/synthetic_{f:02d}_{'_'.join(sorted({s.replace(' ', '') for s in kinds}))}.csv"
        df = pd.DataFrame({"timestamp": ts, "value": np.round(x, 3)})
        data[key] = df
        windows[key] = nab_windows(ts, onsets)
        rows[key] = sweep_rows(ts, windows[key], name=key)
    return NabCorpus(root=None, data=data, rows=rows, n_windows_labelled=sum(len(w) for w in windows.values()),
                     profiles={p: dict(c) for p, c in NAB_PROFILES.items()}, windows=windows,
                     source=f"synthetic (seed {seed})")


def load_detections(path: str | Path, data: pd.DataFrame, name: str = "") -> np.ndarray:
    """Anomaly scores of a NAB results file (``timestamp,anomaly_score``; .gz allowed), checked against ``data``.

    Errors name the file and row: a timestamp differing from the data file's, a score outside [0, 1] or NaN.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        det = pd.read_csv(fh)
    return check_detections(det, data, name or str(path))


def check_detections(det: pd.DataFrame, data: pd.DataFrame, name: str) -> np.ndarray:
    """Validate one detection table against its data file; return its ``anomaly_score`` as floats."""
    for col in ("timestamp", "anomaly_score"):
        if col not in det.columns:
            raise ValueError(f"{name}: no column {col!r}")
    if len(det) != len(data):
        raise ValueError(f"{name}: {len(det)} rows but the data file has {len(data)}")
    ts = pd.to_datetime(det["timestamp"]).to_numpy()
    bad = np.flatnonzero(ts != pd.to_datetime(data["timestamp"]).to_numpy())
    if bad.size:
        r = int(bad[0])
        raise ValueError(f"{name}: row {r} timestamp {det['timestamp'].iloc[r]} does not match the data file's "
                         f"{data['timestamp'].iloc[r]}")
    s = det["anomaly_score"].to_numpy(dtype=float)
    bad = np.flatnonzero(~((s >= 0) & (s <= 1)))
    if bad.size:
        r = int(bad[0])
        raise ValueError(f"{name}: row {r} anomaly_score {s[r]} is outside [0, 1]")
    return s


def score_detector(corpus: NabCorpus, scores: dict, thresholds: dict | None = None,
                   profiles=PROFILE_NAMES) -> pd.DataFrame:
    """NAB scores of one detector on ``corpus`` (``scores``: key -> anomaly scores in [0, 1]).

    With ``thresholds`` (profile -> threshold) those are used, else each profile's threshold is found by NAB's
    corpus-wide sweep. Returns one row per profile: threshold, raw, null, perfect, final score (0..100 scale).
    """
    keys = corpus.keys
    missing = [k for k in keys if k not in scores]
    if missing:
        raise ValueError(f"scores lack file={missing[0]!r}")
    rows_list = [corpus.rows[k] for k in keys]
    sc_list = []
    for k in keys:
        s = np.asarray(scores[k], dtype=float)
        if s.shape != (len(corpus.data[k]),):
            raise ValueError(f"{k}: {s.size} scores for {len(corpus.data[k])} rows")
        bad = np.flatnonzero(~((s >= 0) & (s <= 1)))
        if bad.size:
            raise ValueError(f"{k}: row {int(bad[0])} anomaly score {s[bad[0]]} is outside [0, 1]")
        sc_list.append(s)
    n_scored = sum(r.n_windows for r in rows_list)
    out = []
    for p in profiles:
        cost = _cost(p, corpus.profiles)
        if thresholds is None:
            thr, _ = optimise_threshold(rows_list, sc_list, cost)
        else:
            if p not in thresholds:
                raise ValueError(f"thresholds lack profile={p!r}")
            thr = float(thresholds[p])
        raw = corpus_raw_score(rows_list, sc_list, cost, thr)
        out.append({"profile": p, "threshold": thr, "raw": raw, "null": -cost["fnWeight"] * n_scored,
                    "perfect": cost["tpWeight"] * corpus.n_windows_labelled,
                    "score": normalise(raw, n_scored, corpus.n_windows_labelled, cost)})
    return pd.DataFrame(out).set_index("profile")


def numenta_published(data_dir: str = "") -> tuple[dict, dict]:
    """Published ``numenta`` scores and thresholds (profile -> value) from ``results/numenta_published.json``."""
    pub = json.loads((nab_root(data_dir) / "results" / "numenta_published.json").read_text())["numenta"]
    return pub["final_score"], pub["thresholds"]


def numenta_detections(corpus: NabCorpus) -> dict:
    """The ``numenta`` detector's published anomaly scores for every file of ``corpus``."""
    out = {}
    for key in corpus.keys:
        d, f = key.split("/")
        out[key] = load_detections(corpus.root / "results" / "numenta" / d / f"numenta_{f}.gz", corpus.data[key],
                                   name=f"results/numenta/{d}/numenta_{f}.gz")
    return out
