"""Distributed tracing from simulation records: spans, OTLP/JSON export, critical-path attribution.

A *span* table has one row per span: trace_id (32 hex digits), span_id (16 hex), parent_span_id
("" for a root), service, name, start and end (s from the start of the run). ``fanout_spans``
builds it from a fan-out ``run_trials`` result: one root span per request (the front end, from
the arrival to the join) and one child span per leaf visit (from the arrival at the leaf to its
reply, so it includes the queueing wait). ``critical_path`` walks each trace backwards from the
root's end, as a tracing back end does: the child that finished last before the current instant
is on the path, the time no child covers is the parent's own. ``attribute_slowest`` sums that
attribution over the slowest fraction of requests by service. ``otlp_json`` writes spans in the
OpenTelemetry OTLP/JSON encoding (ids as hex strings, times as unix nanoseconds in strings), the
body of an OTLP/HTTP export that Jaeger or Grafana Tempo can load.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import checks
from analysis.atomic import atomic_write_text

__all__ = ["SPAN_COLUMNS", "fanout_spans", "critical_path", "attribute_slowest", "otlp_json",
           "write_otlp_json"]

SPAN_COLUMNS = ["trace_id", "span_id", "parent_span_id", "service", "name", "start", "end"]


def _hex_ids(keys: np.ndarray, salt: str, digits: int) -> list[str]:
    """Deterministic random-looking hex ids (never all zeros, which OTLP forbids)."""
    out = []
    for key in keys.tolist():
        h = hashlib.blake2b(f"{salt}/{key}".encode(), digest_size=digits // 2).hexdigest()
        out.append(h if h.strip("0") else "1".rjust(digits, "0"))
    return out


def fanout_spans(result, root_service: str = "frontend", trial: int = 0) -> pd.DataFrame:
    """Spans (SPAN_COLUMNS plus request, wait_s) of every completed fan-out request of one
    replication ``trial`` of a ``run_trials(FanOut(...), keep_records=True)`` result."""
    root_service = checks.nonempty_string("root_service", root_service)
    trial = checks.integer("trial", trial, 0)
    if getattr(result, "requests", None) is None or getattr(result, "records", None) is None:
        raise ValueError("result needs request and visit records: run_trials(..., "
                         "keep_records=True) on a FanOut")
    if "critical_service" not in result.requests.columns:
        raise ValueError("result is not a fan-out run (no critical_service column in requests)")
    req = result.requests[(result.requests["trial"] == trial)
                          & result.requests["exit"].notna()]
    if req.empty:
        raise ValueError(f"trial={trial} has no completed requests")
    rec = result.records[(result.records["trial"] == trial)
                         & result.records["request"].isin(req["request"])]
    seed = result.params.get("seed", 0)
    salt = f"{seed}/{trial}"
    rid = req["request"].to_numpy()
    trace = dict(zip(rid.tolist(), _hex_ids(rid, "trace/" + salt, 32)))
    root_id = dict(zip(rid.tolist(), _hex_ids(rid, "root/" + salt, 16)))
    roots = pd.DataFrame({
        "trace_id": [trace[r] for r in rid.tolist()], "span_id": [root_id[r] for r in rid.tolist()],
        "parent_span_id": "", "service": root_service, "name": "GET /page",
        "start": req["arrival"].to_numpy(float), "end": req["exit"].to_numpy(float),
        "request": rid, "wait_s": 0.0})
    vr = rec["request"].to_numpy()
    keys = np.char.add(np.char.add(vr.astype(str), "/"), rec["service"].astype(str).to_numpy())
    wait = rec["wait"].to_numpy(float)
    leaves = pd.DataFrame({
        "trace_id": [trace[r] for r in vr.tolist()], "span_id": _hex_ids(keys, "leaf/" + salt, 16),
        "parent_span_id": [root_id[r] for r in vr.tolist()],
        "service": rec["service"].astype(str).to_numpy(),
        "name": "rpc " + rec["service"].astype(str).to_numpy(),
        "start": rec["arrival"].to_numpy(float), "end": rec["exit"].to_numpy(float),
        "request": vr, "wait_s": wait})
    out = pd.concat([roots, leaves], ignore_index=True)
    return out.sort_values(["request", "parent_span_id", "start"], kind="stable",
                           ignore_index=True)


def _check_spans(spans) -> pd.DataFrame:
    if not isinstance(spans, pd.DataFrame):
        raise ValueError(f"spans must be a DataFrame with columns {SPAN_COLUMNS}, "
                         f"got {type(spans).__name__}")
    missing = [c for c in SPAN_COLUMNS if c not in spans.columns]
    if missing:
        raise ValueError(f"spans lacks column(s) {missing} (needs {SPAN_COLUMNS})")
    if (spans["end"] < spans["start"]).any():
        raise ValueError("spans has a span whose end is before its start")
    return spans


def critical_path(spans) -> pd.DataFrame:
    """Critical-path attribution of every trace: rows (trace_id, service, span_id, self_s), the
    seconds of the root span's duration each span on the critical path accounts for (their sum
    is the root's duration). Walks back from the root's end: the child that ended last (at or
    before the current instant) is on the path; gaps no child covers are the parent's own time.
    """
    spans = _check_spans(spans)
    rows = []
    children: dict[str, list] = {}
    # plain Python lists: iterating pandas (string) columns element by element costs ~4x more
    span_id, parent_id, service, trace_id = (spans[c].tolist() for c in
                                             ("span_id", "parent_span_id", "service", "trace_id"))
    start, end = spans["start"].tolist(), spans["end"].tolist()
    for sid, pid, svc, st, en in zip(span_id, parent_id, service, start, end):
        children.setdefault(pid, []).append((en, st, sid, svc))
    info = dict(zip(span_id, zip(trace_id, service, start, end)))
    for lst in children.values():
        lst.sort(reverse=True)                                   # latest end first
    roots = [sid for sid, pid in zip(span_id, parent_id) if pid == ""]
    for root in roots:
        trace = info[root][0]
        stack = [(root, info[root][2], info[root][3])]
        while stack:
            sid, lo, hi = stack.pop()
            svc = info[sid][1]
            t = hi
            own = 0.0
            for en, st, cid, _ in children.get(sid, ()):
                if en > t or st < lo:
                    continue
                if st >= t:
                    continue
                own += t - min(en, t)
                stack.append((cid, st, min(en, t)))
                t = st
                if t <= lo:
                    break
            own += max(t - lo, 0.0)
            rows.append((trace, svc, sid, own))
    return pd.DataFrame(rows, columns=["trace_id", "service", "span_id", "self_s"])


def attribute_slowest(spans, fraction: float = 0.01) -> pd.DataFrame:
    """Attribute the end-to-end latency of the slowest ``fraction`` of traces (by root span
    duration) to services on their critical paths. Rows by service: seconds (total critical-path
    time), share (of the total), traces_dominated (traces where the service had the largest
    share), sorted by share, largest first."""
    spans = _check_spans(spans)
    frac = checks.real("fraction", fraction)
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"fraction must be in (0, 1] (1: every trace), got {fraction!r}")
    roots = spans[spans["parent_span_id"] == ""]
    dur = roots["end"] - roots["start"]
    slow = set(roots.loc[dur >= dur.quantile(1.0 - frac), "trace_id"]) if frac < 1 else \
        set(roots["trace_id"])
    path = critical_path(spans[spans["trace_id"].isin(slow)])
    per = path.groupby(["trace_id", "service"], observed=True)["self_s"].sum()
    top = per.groupby(level=0).idxmax().map(lambda ix: ix[1]).value_counts()
    total = path.groupby("service")["self_s"].sum()
    out = pd.DataFrame({"seconds": total, "share": total / total.sum()})
    out["traces_dominated"] = top.reindex(out.index).fillna(0).astype(int)
    out.attrs = {}
    return out.sort_values("share", ascending=False)


def otlp_json(spans, epoch_unix_s: float = 1_700_000_000.0, max_traces: int | None = None,
              scope: str = "analysis.tracing") -> dict:
    """Spans as an OTLP/JSON ExportTraceServiceRequest (a dict): one resourceSpans per service
    (resource attribute service.name), ids as lowercase hex, start/end as unix nanoseconds
    (strings) counted from ``epoch_unix_s``; at most ``max_traces`` traces (the first ones)."""
    spans = _check_spans(spans)
    epoch = checks.nonnegative("epoch_unix_s", epoch_unix_s)
    if max_traces is not None:
        keep = pd.unique(spans["trace_id"])[:checks.integer("max_traces", max_traces, 1)]
        spans = spans[spans["trace_id"].isin(keep)]
    base = int(round(epoch * 1e9))
    resources = []
    for svc, group in spans.groupby("service", sort=True):
        out = []
        for row in group.itertuples(index=False):
            span = {"traceId": row.trace_id, "spanId": row.span_id, "name": row.name,
                    "kind": 2 if row.parent_span_id else 1,          # SERVER (2) / INTERNAL (1)
                    "startTimeUnixNano": str(base + int(round(row.start * 1e9))),
                    "endTimeUnixNano": str(base + int(round(row.end * 1e9))),
                    "status": {}}
            if row.parent_span_id:
                span["parentSpanId"] = row.parent_span_id
            if "wait_s" in group.columns:
                span["attributes"] = [{"key": "queue.wait_s",
                                       "value": {"doubleValue": float(row.wait_s)}}]
            out.append(span)
        resources.append({
            "resource": {"attributes": [{"key": "service.name",
                                         "value": {"stringValue": str(svc)}}]},
            "scopeSpans": [{"scope": {"name": scope}, "spans": out}]})
    return {"resourceSpans": resources}


def write_otlp_json(path, spans, **kwargs) -> Path:
    """Write otlp_json(spans, **kwargs) to ``path`` (atomic); returns the path."""
    path = Path(path)
    atomic_write_text(path, json.dumps(otlp_json(spans, **kwargs), indent=1, sort_keys=True))
    return path
