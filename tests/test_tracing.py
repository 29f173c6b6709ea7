"""Spans from fan-out records, critical-path attribution (finds a planted slow service), and the
OTLP/JSON export parsed with the opentelemetry-proto package."""
from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

from analysis import tracing
from analysis.fanout import FanOut
from analysis.simulation import run_trials
from analysis.topology import Exponential, Lognormal, Service, two_point


def fanout_run(slow="svc-07", quorum=None, k=12, horizon=400.0):
    leaves = [Service(f"svc-{i:02d}", 1, two_point(0.004, 0.08, p_high=0.02) if f"svc-{i:02d}" == slow
                      else Lognormal(0.004, scv=1.0)) for i in range(k)]
    return run_trials(FanOut(leaves, rate=20.0, quorum=quorum), 1, horizon=horizon, seed=5,
                      executor="serial")


@pytest.fixture(scope="module")
def run():
    return fanout_run()


def test_spans_tree_and_times(run):
    spans = tracing.fanout_spans(run)
    roots = spans[spans.parent_span_id == ""]
    req = run.requests[run.requests.exit.notna()]
    assert len(roots) == len(req)
    assert len(spans) == len(req) * 13
    assert roots.trace_id.str.fullmatch("[0-9a-f]{32}").all()
    assert spans.span_id.str.fullmatch("[0-9a-f]{16}").all()
    assert spans.span_id.is_unique
    kids = spans[spans.parent_span_id != ""]
    parent = roots.set_index("span_id")
    assert kids.parent_span_id.isin(parent.index).all()
    # every child starts with its root, the root ends with its slowest child
    assert np.array_equal(kids.start.to_numpy(), parent.loc[kids.parent_span_id, "start"].to_numpy())
    last = kids.groupby("parent_span_id").end.max()
    assert np.allclose(last.to_numpy(), parent.loc[last.index, "end"].to_numpy(), rtol=0, atol=1e-12)
    assert (kids.wait_s >= 0).all() and (kids.end - kids.start >= kids.wait_s - 1e-12).all()


def test_critical_path_sums_to_the_root_duration(run):
    spans = tracing.fanout_spans(run)
    path = tracing.critical_path(spans)
    roots = spans[spans.parent_span_id == ""].set_index("trace_id")
    total = path.groupby("trace_id").self_s.sum()
    assert np.allclose(total.to_numpy(), (roots.end - roots.start).loc[total.index].to_numpy(),
                       rtol=1e-9, atol=1e-12)
    # the critical leaf is the one the engine reports as critical_service
    leaf = path[path.service != "frontend"].set_index("trace_id").service
    crit = run.requests.set_index("request").critical_service.astype(str)
    byreq = spans[spans.parent_span_id == ""].set_index("trace_id").request
    assert (leaf.to_numpy() == crit.loc[byreq.loc[leaf.index]].to_numpy()).all()


def test_attribution_finds_the_planted_slow_service(run):
    table = tracing.attribute_slowest(tracing.fanout_spans(run), 0.01)
    assert table.index[0] == "svc-07"
    assert table.share.iloc[0] > 0.5
    assert table.share.sum() == pytest.approx(1.0)
    # moving the fault moves the finding
    other = tracing.attribute_slowest(tracing.fanout_spans(fanout_run(slow="svc-02")), 0.01)
    assert other.index[0] == "svc-02"


def test_critical_path_with_a_quorum_is_the_qth_reply():
    run = fanout_run(quorum=6)
    spans = tracing.fanout_spans(run)
    path = tracing.critical_path(spans)
    kids = spans[spans.parent_span_id != ""]
    root_end = spans[spans.parent_span_id == ""].set_index("trace_id").end
    on_path = path[path.service != "frontend"].merge(kids[["span_id", "end"]], on="span_id")
    assert np.allclose(on_path.end.to_numpy(), root_end.loc[on_path.trace_id].to_numpy())


def test_hand_built_nested_trace():
    # root [0, 10]: child a [1, 4], child b [2, 9] with grandchild c [3, 8]
    spans = pd.DataFrame([
        ("t", "r", "", "front", "x", 0.0, 10.0), ("t", "a", "r", "A", "x", 1.0, 4.0),
        ("t", "b", "r", "B", "x", 2.0, 9.0), ("t", "c", "b", "C", "x", 3.0, 8.0)],
        columns=tracing.SPAN_COLUMNS)
    path = tracing.critical_path(spans).set_index("service").self_s
    # front: 9->10 and 0->2 (a ends at 4 > 2, so not on the path); B: 8->9 and 2->3; C: 3->8
    assert path.to_dict() == pytest.approx({"front": 3.0, "B": 2.0, "C": 5.0})


def _hex_to_b64(obj):
    """OTLP/JSON encodes ids as hex; protobuf's JSON parser expects base64 for bytes fields."""
    if isinstance(obj, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode()
                    if k in ("traceId", "spanId", "parentSpanId") else _hex_to_b64(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_hex_to_b64(v) for v in obj]
    return obj


def test_otlp_json_parses_with_opentelemetry_proto(run, tmp_path):
    pytest.importorskip("opentelemetry.proto")
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    spans = tracing.fanout_spans(run)
    path = tracing.write_otlp_json(tmp_path / "traces.json", spans, max_traces=5)
    doc = json.loads(path.read_text())
    msg = json_format.Parse(json.dumps(_hex_to_b64(doc)),
                            trace_service_pb2.ExportTraceServiceRequest())
    parsed = [s for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(parsed) == 5 * 13
    assert {len(s.trace_id) for s in parsed} == {16} and {len(s.span_id) for s in parsed} == {8}
    services = {rs.resource.attributes[0].value.string_value for rs in msg.resource_spans}
    assert services == {"frontend"} | {f"svc-{i:02d}" for i in range(12)}
    first = spans[spans.trace_id.isin(pd.unique(spans.trace_id)[:5])]
    ours = first.set_index("span_id")
    for s in parsed:
        row = ours.loc[s.span_id.hex()]
        assert s.trace_id.hex() == row.trace_id
        assert (s.parent_span_id.hex() if s.parent_span_id else "") == row.parent_span_id
        assert s.end_time_unix_nano - s.start_time_unix_nano == pytest.approx(
            (row.end - row.start) * 1e9, abs=2)
        assert s.start_time_unix_nano >= 1_700_000_000 * 10**9


@pytest.mark.parametrize("call,match", [
    (lambda: tracing.critical_path(pd.DataFrame({"trace_id": []})), "lacks column"),
    (lambda: tracing.attribute_slowest(pd.DataFrame(columns=tracing.SPAN_COLUMNS), 0.0),
     "fraction"),
    (lambda: tracing.otlp_json([1, 2]), "spans must be a DataFrame"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_spans_need_a_fanout_run_with_records():
    with pytest.raises(ValueError, match="keep_records"):
        tracing.fanout_spans(object())
    from analysis.topology import ServiceGraph
    graph = ServiceGraph([Service("a", 1, Exponential(0.01))], arrivals={"a": 10.0})
    plain = run_trials(graph, 1, horizon=20.0, seed=1, executor="serial")
    with pytest.raises(ValueError, match="not a fan-out run"):
        tracing.fanout_spans(plain)
