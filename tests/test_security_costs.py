"""Security costs: the measurement pipeline (not the machine's speed), the summaries on a fixed measurements
dict, the cost arithmetic against hand computations, reading measurements back, and bad input."""
from __future__ import annotations

import json
import ssl

import numpy as np
import pytest

from analysis import security_costs as sc


def fixed_measurements() -> dict:
    """A hand-made measurements dict (numbers chosen for easy hand checks, not measured)."""
    tls = []
    for r, (w_tcp, w_full, w_res, c_full, c_res) in enumerate([(1e-4, 3e-3, 1e-3, 2e-3, 4e-4),
                                                                (2e-4, 4e-3, 2e-3, 3e-3, 5e-4),
                                                                (3e-4, 5e-3, 3e-3, 4e-3, 6e-4)]):
        tls += [dict(kind="tcp_connect", repetition=r, wall_s=w_tcp, server_cpu_s=0.0),
                dict(kind="tls_full", repetition=r, wall_s=w_full, server_cpu_s=c_full),
                dict(kind="tls_resumed", repetition=r, wall_s=w_res, server_cpu_s=c_res)]
    aead = []
    for alg, per_byte in (("AES-256-GCM", 1e-9), ("ChaCha20-Poly1305", 2e-9)):
        for op in ("encrypt", "decrypt"):
            for size in (100, 1_000, 10_000):
                for r, f in enumerate((0.9, 1.0, 1.3)):
                    aead.append(dict(algorithm=alg, operation=op, size_bytes=size, repetition=r, ops=10,
                                     seconds=f * (1e-6 + per_byte * size)))
    logs = [dict(mode=m, repetition=r, records=100, cpu_s_per_record=v * f, wall_s_per_record=v * f)
            for m, v in (("sync", 4e-6), ("async", 1e-6)) for r, f in enumerate((1.0, 2.0, 3.0))]
    return {"schema": sc.SCHEMA, "machine": {"cpu_model": "test CPU"}, "settings": {}, "tls": tls, "aead": aead,
            "log_writes": logs}


# ------------------------------------------------------------------------------------ arithmetic by hand
def test_audit_log_volume_against_a_hand_computation():
    v = sc.audit_log_volume(100.0, bytes_per_request=500, compression_ratio=5, replicas=3, retention_days=90,
                            price_per_gb_month=0.02)
    # 100 req/s x 86,400 s = 8.64e6 req/day; x 500 B / 5 x 3 = 2.592e9 B/day = 2.592 GB/day
    assert v["requests_per_day"] == pytest.approx(8.64e6)
    assert v["gb_per_day"] == pytest.approx(2.592)
    assert v["gb_per_month"] == pytest.approx(77.76)
    assert v["stored_gb"] == pytest.approx(233.28)          # 90 days retained
    assert v["monthly_storage_cost"] == pytest.approx(4.6656)
    assert v["write_bytes_per_s"] == pytest.approx(30_000)
    # a series: only its mean matters
    assert sc.audit_log_volume([50.0, 150.0], bytes_per_request=500, compression_ratio=5, replicas=3,
                               retention_days=90, price_per_gb_month=0.02)["stored_gb"] == pytest.approx(233.28)


def test_per_request_security_cost_by_hand():
    # a 2 ms handshake over 100 requests, 10 us of AEAD, Istio's 0.35 vCPU per 1000 requests/s = 0.35 ms
    assert sc.per_request_security_s(handshake_cpu_s=2e-3, requests_per_connection=100, aead_s_per_request=1e-5,
                                     sidecar_cpu_s=0.35 / 1000) == pytest.approx(2e-5 + 1e-5 + 3.5e-4)


def test_servers_for_response_quantile_is_the_least_count():
    from analysis import theory
    c = sc.servers_for_response_quantile(100.0, 0.05, 0.99, 0.25)
    assert theory.mmc_response_quantile(100.0, 20.0, c, 0.99) <= 0.25
    assert theory.mmc_response_quantile(100.0, 20.0, c - 1, 0.99) > 0.25 if c - 1 > 5 else True


# ------------------------------------------------------------------------------------ summaries
def test_summaries_of_a_fixed_measurements_dict():
    m = fixed_measurements()
    tls = sc.summarise_tls(m)
    assert tls.loc["tls_full", "wall_median"] == pytest.approx(4e-3)
    assert tls.loc["tls_full", "wall_q25"] == pytest.approx(3.5e-3)
    assert tls.loc["tls_resumed", "server_cpu_median"] == pytest.approx(5e-4)
    assert tls.loc["tcp_connect", "wall_n"] == 3
    aead = sc.summarise_aead(m)
    row = aead.loc[("AES-256-GCM", "encrypt", 10_000)]
    assert row["median"] == pytest.approx(1.1e-5)
    assert row["throughput_bytes_per_s"] == pytest.approx(10_000 / 1.1e-5)
    logs = sc.summarise_log_writes(m)
    assert logs.loc["sync", "median"] == pytest.approx(8e-6) and logs.loc["async", "median"] == pytest.approx(2e-6)


def test_aead_seconds_interpolates_between_and_extrapolates_beyond_the_measured_sizes():
    aead = sc.summarise_aead(fixed_measurements())
    # measured points are returned exactly
    assert sc.aead_seconds(aead, "AES-256-GCM", 1_000) == pytest.approx(2e-6)
    # between 1,000 and 10,000 B: log-log interpolation lies between the two
    mid = sc.aead_seconds(aead, "AES-256-GCM", 3_000)
    assert 2e-6 < mid < 1.1e-5
    # beyond the largest: linear in the bytes
    assert sc.aead_seconds(aead, "ChaCha20-Poly1305", 100_000, "decrypt") == pytest.approx(10 * 2.1e-5)
    with pytest.raises(ValueError, match="algorithm='DES'"):
        sc.aead_seconds(aead, "DES", 100)


# ------------------------------------------------------------------------------------ the pipeline
def test_self_signed_certificate_loads_into_an_ssl_context(tmp_path):
    cert, key = sc.write_self_signed_certificate(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert)
    with pytest.raises(ValueError, match="not a directory"):
        sc.write_self_signed_certificate(tmp_path / "missing")


def test_tls_measurement_really_resumes_sessions():
    rows = sc.measure_tls_handshakes(3, warmup=1)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("tls_full") == kinds.count("tls_resumed") == kinds.count("tcp_connect") == 3
    for r in rows:
        assert r["wall_s"] > 0
        if r["kind"] == "tls_full":
            assert r["resumed"] is False and r["server_cpu_s"] > 0 and r["tls_version"].startswith("TLS")
        if r["kind"] == "tls_resumed":
            assert r["resumed"] is True


def test_measure_write_read_round_trip_and_the_results_json_form(tmp_path):
    m = sc.measure(tls_repetitions=2, aead_repetitions=2, sizes=(100, 1_000), log_records=50, log_repetitions=2)
    assert m["machine"]["cpu_model"] and m["machine"]["openssl"] == ssl.OPENSSL_VERSION
    assert {r["algorithm"] for r in m["aead"]} == set(sc.AEAD_ALGORITHMS)
    path = sc.write_measurements(tmp_path / "m.json", m)
    assert sc.read_measurements(path) == json.loads(json.dumps(m))
    wrapped = tmp_path / "06_security_overhead.json"
    wrapped.write_text(json.dumps({"measurements": m, "headline": {}}))
    assert sc.read_measurements(wrapped)["tls"] == json.loads(json.dumps(m["tls"]))


def test_resolve_cost_source_takes_relative_paths_from_the_project_root(tmp_path):
    from analysis import paths

    assert sc.resolve_cost_source("measure") is None
    assert sc.resolve_cost_source("README.md") == paths.ROOT / "README.md"
    f = sc.write_measurements(tmp_path / "m.json", fixed_measurements())
    assert sc.resolve_cost_source(str(f)) == f
    with pytest.raises(ValueError, match="cost_source must be 'measure'.*no such file"):
        sc.resolve_cost_source("no/such/file.json")
    with pytest.raises(ValueError, match="cost_source must be 'measure'"):
        sc.resolve_cost_source("")


@pytest.mark.parametrize("content, match", [
    (None, "no such file"),
    ("not json", "not JSON"),
    (json.dumps({"schema": "other"}), "expected a dict with schema"),
    (json.dumps({"schema": sc.SCHEMA, "machine": {"cpu_model": "x"}, "tls": [], "aead": [1], "log_writes": [1]}),
     "'tls' must be a non-empty list"),
])
def test_read_measurements_rejects_bad_files_naming_cost_source(tmp_path, content, match):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=f"cost_source.*{match}"):
        sc.read_measurements(path)


@pytest.mark.parametrize("call, match", [
    (lambda: sc.audit_log_volume(-1.0, bytes_per_request=100), "arrival_rate"),
    (lambda: sc.audit_log_volume(1.0, bytes_per_request=0), "bytes_per_request"),
    (lambda: sc.audit_log_volume(1.0, bytes_per_request=10, compression_ratio=0.5), "compression_ratio"),
    (lambda: sc.per_request_security_s(handshake_cpu_s=1e-3, requests_per_connection=0.5,
                                       aead_s_per_request=0), "requests_per_connection"),
    (lambda: sc.measure_aead(sizes=(0,), repetitions=1), r"sizes\[\]"),
    (lambda: sc.measure_aead(repetitions=1, algorithms=("DES",)), "algorithm"),
    (lambda: sc.measure_tls_handshakes(0), "repetitions"),
    (lambda: sc.servers_for_response_quantile(10.0, 0.1, 1.5, 1.0), "q"),
])
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_queue_impact_adds_the_cpu_to_the_service_time_of_an_mmc_tier():
    from analysis import theory
    df = sc.queue_impact(arrival_rate=200.0, base_service_s=0.01, extra_cpu_s={"plain": 0.0, "tls": 0.002,
                                                                                "slow": 0.02}, target_s=0.1)
    c = sc.servers_for_response_quantile(200.0, 0.01, 0.99, 0.1)
    assert df.loc["plain", "servers_needed"] == c
    assert df.loc["tls", "mean_service_s"] == pytest.approx(0.012)
    assert df.loc["tls", "utilisation"] == pytest.approx(200 * 0.012 / c)
    assert df.loc["tls", "p99_s"] == pytest.approx(theory.mmc_response_quantile(200.0, 1 / 0.012, c, 0.99))
    assert df.loc["tls", "servers_needed"] == sc.servers_for_response_quantile(200.0, 0.012, 0.99, 0.1)
    assert df.loc["tls", "extra_servers"] == df.loc["tls", "servers_needed"] - c
    # 30 ms services: their own p99 (138 ms) is above the target, no server count reaches it
    assert np.isnan(df.loc["slow", "servers_needed"])
    # a tier too small for the extra CPU: infinite p99, not an error
    small = sc.queue_impact(arrival_rate=200.0, base_service_s=0.01, extra_cpu_s={"x": 0.01}, servers=3,
                            target_s=0.05)
    assert small.loc["x", "p99_s"] == float("inf")


# ------------------------------------------------------------------------------------ the notebook
@pytest.mark.notebook
def test_notebook_derived_numbers_are_deterministic_with_a_fixed_measurements_file(tmp_path, monkeypatch):
    """Notebook 06 run twice on the same measurements (once from a measurements file, once from the first run's
    results JSON) gives identical derived numbers, and those numbers are the file's, not this machine's."""
    import papermill as pm

    from analysis import paths

    source = sc.write_measurements(tmp_path / "fixed.json", fixed_measurements())
    nb = paths.NOTEBOOKS / "06_security_overhead.ipynb"
    runs = []
    for i, cost_source in enumerate([source, tmp_path / "out0" / "results" / "06_security_overhead.json"]):
        out = tmp_path / f"out{i}"
        monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(out))
        pm.execute_notebook(str(nb), str(tmp_path / f"run{i}.ipynb"),
                            parameters={"quick": True, "cost_source": str(cost_source)},
                            kernel_name=paths.KERNEL_NAME, cwd=str(paths.NOTEBOOKS), progress_bar=False,
                            log_output=False)
        results = json.loads((out / "results" / "06_security_overhead.json").read_text())
        results.pop("provenance")
        results.pop("cost_source")
        runs.append(results)
    assert runs[0] == runs[1]
    r = runs[0]
    assert r["machine"] == {"cpu_model": "test CPU"}
    assert r["tls_full_server_cpu_s"] == pytest.approx(3e-3) and r["tls_resumed_server_cpu_s"] == pytest.approx(5e-4)
    # full handshake per request: 3 ms + AEAD of 10 kB decrypted and 10 kB encrypted (1.1e-5 s each in the file)
    full = r["api_tier"]["TLS new conn., full handshake"]
    assert full["extra_cpu_s"] == pytest.approx(3e-3 + 2 * 1.1e-5)
    assert r["audit"]["sync_cpu_s_per_record"] == pytest.approx(8e-6)
