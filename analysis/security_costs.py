"""Measured costs of security on the running machine, and the arithmetic that feeds them into queues.

Measurements (machine-dependent: they change from machine to machine and from run to run):

* :func:`measure_tls_handshakes`: TCP connect, full TLS handshake and resumed TLS handshake over
  loopback with the standard-library ``ssl`` module (both ends in this process, the server in a
  thread). Per handshake: wall time seen by the client (s) and the server thread's CPU time (s,
  ``time.thread_time``), the cost a server pays per new connection.
* :func:`measure_aead`: authenticated encryption (AES-256-GCM, ChaCha20-Poly1305 from the
  ``cryptography`` package) seconds per operation for payloads from 100 B to 1 MB.
* :func:`machine_info`: CPU model, Python, OpenSSL and cryptography versions recorded with them.

:func:`measure` runs both and returns a plain JSON-able dict; :func:`write_measurements` /
:func:`read_measurements` store and reload it (a notebook's results JSON that carries a
``"measurements"`` key is accepted too), so the derived numbers can be recomputed
deterministically from a fixed file.

Arithmetic (pure, deterministic): :func:`summarise_tls`, :func:`summarise_aead` (medians with
quartiles), :func:`aead_seconds` (interpolated cost of a payload), :func:`per_request_security_s`
(CPU seconds a request adds), :func:`audit_log_volume` (bytes -> storage -> monthly cost).

Units: times in seconds, sizes in bytes, rates in requests/s, prices per GB-month (TIMEOUT_S = 10.0                                             # loopback socket timeout (s): no hang
GB = 1e9 bytes).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from analysis import checks

__all__ = [
    "SCHEMA", "AEAD_ALGORITHMS", "DEFAULT_SIZES", "machine_info", "write_self_signed_certificate",
    "measure_tls_handshakes", "measure_aead", "measure", "write_measurements", "read_measurements",
    "summarise_tls", "summarise_aead", "aead_seconds", "per_request_security_s", "audit_log_volume",
    "measure_log_writes", "summarise_log_writes", "servers_for_response_quantile", "queue_impact",
    "resolve_cost_source",
]

SCHEMA = "kit-security-measurements/1"
AEAD_ALGORITHMS = ("AES-256-GCM", "ChaCha20-Poly1305")
DEFAULT_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)     # payload bytes, 100 B .. 1 MB
TLS_KINDS = ("tcp_connect", "tls_full", "tls_resumed")
TIMEOUT_S = 10.0                                             # loopback socket timeout (s): no hang
GB = 1e9                                                     # bytes per GB (cloud storage prices use 10^9)
SECONDS_PER_MONTH = 30 * 86_400                              # a 30-day billing month


# ------------------------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info() -> dict:
    """CPU model (from /proc/cpuinfo, else ``platform``), logical CPUs, OS, Python, OpenSSL, cryptography."""
    import cryptography

    return {"cpu_model": _cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "openssl": ssl.OPENSSL_VERSION,
            "cryptography": cryptography.__version__}


# ------------------------------------------------------------------------------------ TLS
def write_self_signed_certificate(directory: str | os.PathLike, hostname: str = "localhost") -> tuple[Path, Path]:
    """Write a self-signed ECDSA P-256 certificate for ``hostname`` (valid one day) and its key, as PEM.

    Generated with ``cryptography`` (no openssl CLI). Returns (certificate path, key path).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} is not a directory")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "loopback-cert.pem", directory / "loopback-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _serve(listener: socket.socket, ctx: ssl.SSLContext, server_cpu: list, stop: threading.Event) -> None:
    """Server thread: accept, (optionally) TLS-handshake timing the thread's CPU, echo one byte, close."""
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(TIMEOUT_S)
            first = conn.recv(1, socket.MSG_PEEK)
            if first == b"P":                         # plain TCP probe: no TLS
                conn.recv(1)
                conn.sendall(b"k")
                server_cpu.append(0.0)
                continue
            try:
                tls = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                c0 = time.thread_time()
                tls.do_handshake()
                server_cpu.append(time.thread_time() - c0)
                if tls.recv(1):
                    tls.sendall(b"k")
                tls.close()
            except (ssl.SSLError, OSError):      # includes socket timeouts
                server_cpu.append(math.nan)


def measure_tls_handshakes(repetitions: int = 50, *, warmup: int = 3) -> list[dict]:
    """Time ``repetitions`` plain TCP connects, full TLS handshakes and resumed TLS handshakes over loopback.

    Rows: kind ("tcp_connect", "tls_full", "tls_resumed"), repetition, wall_s (client: connect + handshake,
    seconds), server_cpu_s (server thread CPU during its handshake, seconds; 0 for tcp_connect),
    tls_version, resumed (bool). A resumed row whose session was not actually reused is an error.
    Kinds are interleaved repetition by repetition so that drifts in machine load hit all three alike.
    """
    n = checks.integer("repetitions", repetitions, 1)
    w = checks.integer("warmup", warmup, 0)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="kit-tls-") as tmp:
        cert, key = write_self_signed_certificate(tmp)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.load_verify_locations(cert)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        addr = listener.getsockname()
        server_cpu: list = []
        stop = threading.Event()
        thread = threading.Thread(target=_serve, args=(listener, server_ctx, server_cpu, stop), daemon=True)
        thread.start()
        session = None

        def one(kind: str) -> dict:
            nonlocal session
            before = len(server_cpu)
            t0 = time.perf_counter()
            sock = socket.create_connection(addr, timeout=TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if kind == "tcp_connect":
                wall = time.perf_counter() - t0
                with sock:
                    sock.sendall(b"P")
                    sock.recv(1)
                return dict(kind=kind, wall_s=wall, server_cpu_s=0.0, tls_version="none", resumed=False)
            tls = client_ctx.wrap_socket(sock, server_hostname="localhost",
                                         session=session if kind == "tls_resumed" else None)
            wall = time.perf_counter() - t0
            with tls:
                tls.sendall(b"x")              # the echo delivers the TLS 1.3 session ticket to the client
                tls.recv(1)
                version, reused = tls.version(), bool(tls.session_reused)
                session = tls.session
            deadline = time.monotonic() + TIMEOUT_S
            while len(server_cpu) == before:    # the server records its CPU before it echoes
                if time.monotonic() > deadline:
                    raise RuntimeError(f"TLS measurement: the loopback server did not answer within {TIMEOUT_S} s")
                time.sleep(0)
            if kind == "tls_resumed" and not reused:
                raise RuntimeError("TLS session resumption failed: the server did not reuse the session")
            if kind == "tls_full" and reused:
                raise RuntimeError("a full TLS handshake reused a session")
            return dict(kind=kind, wall_s=wall, server_cpu_s=float(server_cpu[-1]), tls_version=version,
                        resumed=reused)

        try:
            for _ in range(w):
                for kind in TLS_KINDS:
                    one(kind)
            for r in range(n):
                for kind in TLS_KINDS:
                    rows.append(dict(one(kind), repetition=r))
        finally:
            stop.set()
            listener.close()
            thread.join(timeout=5)
    return rows


# ------------------------------------------------------------------------------------ AEAD
def _cipher(algorithm: str):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    if algorithm == "AES-256-GCM":
        return AESGCM(bytes(range(32)))
    if algorithm == "ChaCha20-Poly1305":
        return ChaCha20Poly1305(bytes(range(32)))
    raise ValueError(f"algorithm must be one of {AEAD_ALGORITHMS}, got {algorithm!r}")


def measure_aead(sizes=DEFAULT_SIZES, repetitions: int = 20, *, algorithms=AEAD_ALGORITHMS,
                 bytes_per_repetition: int = 1_000_000, max_ops: int = 2_000) -> list[dict]:
    """Seconds per AEAD encrypt and decrypt of one payload, for every algorithm and payload size (bytes).

    Each repetition times a loop of ``ops = clamp(bytes_per_repetition / size, 2, max_ops)`` operations
    (one fixed nonce: a timing loop, not a secure use). Rows: algorithm, operation ("encrypt"/"decrypt"),
    size_bytes, repetition, ops, seconds (per operation).
    """
    n = checks.integer("repetitions", repetitions, 1)
    target = checks.integer("bytes_per_repetition", bytes_per_repetition, 1)
    cap = checks.integer("max_ops", max_ops, 2)
    sizes = [checks.integer("sizes[]", s, 1) for s in sizes]
    if not sizes:
        raise ValueError("sizes must name at least one payload size in bytes, got []")
    nonce = bytes(12)
    rows: list[dict] = []
    ciphers = {a: _cipher(a) for a in algorithms}
    for r in range(-1, n):                   # repetition -1: an untimed warm-up pass (caches, first calls)
        for alg, aead in ciphers.items():
            for size in sizes:
                payload = (bytes(range(256)) * (size // 256 + 1))[:size]
                ops = int(min(cap, max(2, target // size)))
                sealed = aead.encrypt(nonce, payload, None)
                t0 = time.perf_counter()
                for _ in range(ops):
                    aead.encrypt(nonce, payload, None)
                enc = (time.perf_counter() - t0) / ops
                t0 = time.perf_counter()
                for _ in range(ops):
                    aead.decrypt(nonce, sealed, None)
                dec = (time.perf_counter() - t0) / ops
                if r < 0:
                    continue
                rows.append(dict(algorithm=alg, operation="encrypt", size_bytes=size, repetition=r, ops=ops,
                                 seconds=enc))
                rows.append(dict(algorithm=alg, operation="decrypt", size_bytes=size, repetition=r, ops=ops,
                                 seconds=dec))
    return rows


# ------------------------------------------------------------------------------------ audit-log writes
def measure_log_writes(records: int = 2_000, repetitions: int = 5, *, record_bytes: int = 512,
                       batch: int = 256) -> list[dict]:
    """CPU seconds per audit record written synchronously (one ``os.write`` per record, in the request path)
    and asynchronously (records appended to a buffer, one ``os.write`` per ``batch`` records), to a
    temporary file; neither calls fsync (the page cache absorbs both; durability is the storage tier's).

    Rows: mode ("sync"/"async"), repetition, records, cpu_s_per_record, wall_s_per_record.
    """
    n = checks.integer("records", records, 1)
    reps = checks.integer("repetitions", repetitions, 1)
    size = checks.integer("record_bytes", record_bytes, 16)
    b = checks.integer("batch", batch, 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kit-audit-") as tmp:
        for r in range(reps):
            for mode in ("sync", "async"):
                fd = os.open(Path(tmp) / f"audit-{mode}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    pad = "x" * max(0, size - 96)
                    c0, t0 = time.process_time(), time.perf_counter()
                    buffer: list[bytes] = []
                    for i in range(n):
                        line = json.dumps({"ts": i, "user": i % 997, "action": "GET /cart",
                                           "status": 200, "pad": pad}).encode() + b"\n"
                        if mode == "sync":
                            os.write(fd, line)
                        else:
                            buffer.append(line)
                            if len(buffer) >= b:
                                os.write(fd, b"".join(buffer))
                                buffer.clear()
                    if buffer:
                        os.write(fd, b"".join(buffer))
                    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                finally:
                    os.close(fd)
                rows.append(dict(mode=mode, repetition=r, records=n, cpu_s_per_record=cpu / n,
                                 wall_s_per_record=wall / n))
    return rows


# ------------------------------------------------------------------------------------ the bundle
def measure(*, tls_repetitions: int = 50, aead_repetitions: int = 20, sizes=DEFAULT_SIZES,
            log_records: int = 2_000, log_repetitions: int = 5) -> dict:
    """Run every measurement; a JSON-able dict {schema, machine, settings, tls, aead, log_writes}."""
    settings = dict(tls_repetitions=tls_repetitions, aead_repetitions=aead_repetitions,
                    sizes=[int(s) for s in sizes], log_records=log_records, log_repetitions=log_repetitions)
    return {"schema": SCHEMA, "machine": machine_info(), "settings": settings,
            "tls": measure_tls_handshakes(tls_repetitions),
            "aead": measure_aead(sizes, aead_repetitions),
            "log_writes": measure_log_writes(log_records, log_repetitions)}


def write_measurements(path: str | os.PathLike, measurements: dict) -> Path:
    """Write measurements (as returned by :func:`measure`) to ``path`` as JSON; returns the path."""
    _check_measurements(measurements, "measurements")
    path = Path(path)
    path.write_text(json.dumps(measurements, indent=1, sort_keys=True))
    return path


def resolve_cost_source(cost_source: str) -> Path | None:
    """None for ``"measure"``; otherwise the measurements file, a relative path taken from the project root
    (so a notebook, whose working directory is notebooks/, and the command line agree). A missing file is a
    ValueError naming cost_source."""
    from analysis import paths

    if not isinstance(cost_source, str) or not cost_source:
        raise ValueError(f"cost_source must be 'measure' or the path of a measurements JSON, got {cost_source!r}")
    if cost_source == "measure":
        return None
    p = Path(cost_source).expanduser()
    if not p.is_absolute():
        p = paths.ROOT / p
    if not p.is_file():
        raise ValueError(f"cost_source must be 'measure' or the path of a measurements JSON, got {cost_source!r} "
                         f"(no such file: {p})")
    return p


def read_measurements(path: str | os.PathLike) -> dict:
    """Load measurements from a file written by :func:`write_measurements` or from a results JSON of
    notebook 06 (its ``"measurements"`` key). Missing file or wrong content: ValueError naming the path."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"cost_source {str(p)!r}: no such file (a measurements JSON or the notebook's results JSON)")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"cost_source {str(p)!r}: not JSON ({exc})") from None
    if isinstance(data, dict) and "measurements" in data and "schema" not in data:
        data = data["measurements"]
    _check_measurements(data, f"cost_source {str(p)!r}")
    return data


def _check_measurements(m, where: str) -> None:
    if not isinstance(m, dict) or m.get("schema") != SCHEMA:
        raise ValueError(f"{where}: expected a dict with schema {SCHEMA!r}, got "
                         f"{m.get('schema') if isinstance(m, dict) else type(m).__name__!r}")
    for key, cols in (("tls", ("kind", "wall_s", "server_cpu_s")),
                      ("aead", ("algorithm", "operation", "size_bytes", "seconds")),
                      ("log_writes", ("mode", "cpu_s_per_record")), ("machine", ())):
        if key not in m:
            raise ValueError(f"{where}: missing {key!r}")
        if cols:
            rows = m[key]
            if not isinstance(rows, list) or not rows:
                raise ValueError(f"{where}: {key!r} must be a non-empty list of rows")
            for i, row in enumerate(rows):
                missing = [c for c in cols if c not in row]
                if missing:
                    raise ValueError(f"{where}: {key}[{i}] lacks {missing}")
    if "cpu_model" not in m["machine"]:
        raise ValueError(f"{where}: machine lacks 'cpu_model'")


# ------------------------------------------------------------------------------------ summaries
def _quartiles(values) -> dict:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite measurement to summarise")
    q25, q50, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    return dict(median=float(q50), q25=float(q25), q75=float(q75), n=int(v.size))


def summarise_tls(measurements: dict):
    """DataFrame indexed by kind: median, q25, q75, n of wall_s and of server_cpu_s (seconds)."""
    import pandas as pd

    df = pd.DataFrame(measurements["tls"])
    out = {}
    for kind, g in df.groupby("kind", sort=False):
        wall, cpu = _quartiles(g["wall_s"]), _quartiles(g["server_cpu_s"])
        out[kind] = {**{f"wall_{k}": v for k, v in wall.items()},
                     **{f"server_cpu_{k}": v for k, v in cpu.items() if k != "n"}}
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("kind")


def summarise_aead(measurements: dict):
    """DataFrame (algorithm, operation, size_bytes): median, q25, q75 seconds per op, n, and the median
    throughput in bytes/s."""
    import pandas as pd

    df = pd.DataFrame(measurements["aead"])
    rows = []
    for (alg, op, size), g in df.groupby(["algorithm", "operation", "size_bytes"], sort=True):
        q = _quartiles(g["seconds"])
        rows.append(dict(algorithm=alg, operation=op, size_bytes=int(size), **q,
                         throughput_bytes_per_s=size / q["median"]))
    return pd.DataFrame(rows).set_index(["algorithm", "operation", "size_bytes"])


def summarise_log_writes(measurements: dict):
    """DataFrame indexed by mode ("sync"/"async"): median, q25, q75 CPU seconds per record, n."""
    import pandas as pd

    df = pd.DataFrame(measurements["log_writes"])
    return pd.DataFrame.from_dict({mode: _quartiles(g["cpu_s_per_record"]) for mode, g in df.groupby("mode")},
                                  orient="index").rename_axis("mode")


def aead_seconds(aead_summary, algorithm: str, size_bytes, operation: str = "encrypt") -> float:
    """Median seconds of one AEAD ``operation`` on ``size_bytes``, interpolated log-log between the measured
    sizes (linear in the bytes beyond the largest, the per-call cost below the smallest)."""
    size = checks.positive("size_bytes", size_bytes)
    try:
        s = aead_summary.loc[(algorithm, operation)]["median"]
    except KeyError:
        raise ValueError(f"no AEAD measurement for algorithm={algorithm!r}, operation={operation!r}") from None
    x, y = np.log(s.index.to_numpy(dtype=float)), np.log(s.to_numpy(dtype=float))
    if size >= math.exp(x[-1]):
        return float(math.exp(y[-1]) * size / math.exp(x[-1]))
    if size <= math.exp(x[0]):
        return float(math.exp(y[0]))
    return float(math.exp(np.interp(math.log(size), x, y)))


def per_request_security_s(*, handshake_cpu_s: float, requests_per_connection: float,
                           aead_s_per_request: float, sidecar_cpu_s: float = 0.0) -> float:
    """CPU seconds security adds to one request on the server: handshake_cpu_s / requests_per_connection
    (the handshake amortised over the requests a connection carries) + aead_s_per_request (decrypting the
    request and encrypting the response) + sidecar_cpu_s (a sidecar proxy's CPU per request)."""
    h = checks.nonnegative("handshake_cpu_s", handshake_cpu_s)
    k = checks.real("requests_per_connection", requests_per_connection)
    if not k >= 1:
        raise ValueError(f"requests_per_connection must be >= 1, got {requests_per_connection!r}")
    a = checks.nonnegative("aead_s_per_request", aead_s_per_request)
    s = checks.nonnegative("sidecar_cpu_s", sidecar_cpu_s)
    return h / k + a + s


def audit_log_volume(arrival_rate, *, bytes_per_request: float, compression_ratio: float = 1.0,
                     replicas: int = 1, retention_days: float = 365.0,
                     price_per_gb_month: float = 0.023) -> dict:
    """Audit-log volume and cost for a request rate (requests/s; a scalar or a series of hourly means).

    Daily bytes = mean rate x 86,400 s x bytes_per_request / compression_ratio x replicas. At steady state
    the store holds retention_days of logs; monthly cost = stored GB x price_per_gb_month (TIMEOUT_S = 10.0                                             # loopback socket timeout (s): no hang
GB = 1e9 bytes).
    Returns dict: mean_rate (requests/s), requests_per_day, bytes_per_day, gb_per_day, gb_per_month (30 days),
    stored_gb (at retention), monthly_storage_cost, write_bytes_per_s.
    """
    rate = np.asarray(arrival_rate, dtype=float)
    if rate.size == 0 or not np.all(np.isfinite(rate)) or np.any(rate < 0):
        raise ValueError(f"arrival_rate must be finite requests/s >= 0, got {arrival_rate!r}")
    b = checks.positive("bytes_per_request", bytes_per_request)
    comp = checks.positive("compression_ratio", compression_ratio)
    if comp < 1:
        raise ValueError(f"compression_ratio must be >= 1 (original / compressed size), got {compression_ratio!r}")
    rep = checks.integer("replicas", replicas, 1)
    days = checks.positive("retention_days", retention_days)
    price = checks.nonnegative("price_per_gb_month", price_per_gb_month)
    mean_rate = float(rate.mean())
    per_day = mean_rate * 86_400.0
    bytes_day = per_day * b / comp * rep
    stored_gb = bytes_day * days / GB
    return dict(mean_rate=mean_rate, requests_per_day=per_day, bytes_per_day=bytes_day, gb_per_day=bytes_day / GB,
                gb_per_month=bytes_day * 30 / GB, stored_gb=stored_gb, monthly_storage_cost=stored_gb * price,
                write_bytes_per_s=mean_rate * b / comp * rep)


def servers_for_response_quantile(arrival_rate, mean_service_s, q, target_s) -> int:
    """Least number of M/M/c servers whose response-time ``q``-quantile is at most ``target_s`` seconds.

    arrival_rate in requests/s, mean_service_s in seconds (exponential service). The quantile cannot go
    below the service time's own, mean_service_s x ln(1/(1-q)): a smaller target is a ValueError.
    """
    from analysis import theory

    lam = checks.positive("arrival_rate", arrival_rate)
    s = checks.positive("mean_service_s", mean_service_s)
    q = checks.open_unit("q", q)
    target = checks.positive("target_s", target_s)
    floor = s * math.log(1.0 / (1.0 - q))
    if target <= floor * (1 + 1e-9):
        raise ValueError(f"target_s={target_s!r} is below the service time's own {q:g}-quantile "
                         f"({floor:.6g} s): no number of servers reaches it")
    c = int(math.floor(lam * s)) + 1
    while theory.mmc_response_quantile(lam, 1.0 / s, c, q) > target:
        c += 1
    return c


def queue_impact(*, arrival_rate, base_service_s, extra_cpu_s: dict, servers=None, q: float = 0.99,
                 target_s: float):
    """Each security option's CPU per request (``extra_cpu_s``: name -> seconds) added to the mean service time
    of an M/M/c tier (exponential service, mean base_service_s + extra) at ``arrival_rate`` requests/s.

    servers: the tier's size (default: the least meeting ``target_s`` without any extra). Returns a DataFrame
    indexed by option: extra_cpu_s, mean_service_s, utilisation, p99_s (the ``q``-quantile of the response at
    ``servers``; inf when utilisation >= 1), servers_needed (least servers with that quantile <= target_s;
    NaN when the service time alone exceeds the target), extra_servers (against the option with the least
    extra CPU).
    """
    import pandas as pd

    from analysis import theory

    lam = checks.positive("arrival_rate", arrival_rate)
    base = checks.positive("base_service_s", base_service_s)
    if not extra_cpu_s:
        raise ValueError("extra_cpu_s must name at least one option")
    c = (servers_for_response_quantile(lam, base, q, target_s) if servers is None
         else checks.integer("servers", servers, 1))
    rows = {}
    for name, extra in extra_cpu_s.items():
        s = base + checks.nonnegative(f"extra_cpu_s[{name!r}]", extra)
        util = lam * s / c
        p = theory.mmc_response_quantile(lam, 1.0 / s, c, q) if util < 1 else math.inf
        floor = s * math.log(1.0 / (1.0 - q))
        needed = servers_for_response_quantile(lam, s, q, target_s) if target_s > floor * (1 + 1e-9) else math.nan
        rows[name] = dict(extra_cpu_s=float(extra), mean_service_s=s, utilisation=util, p99_s=p,
                          servers_needed=needed)
    df = pd.DataFrame.from_dict(rows, orient="index").rename_axis("option")
    df["extra_servers"] = df["servers_needed"] - df.loc[df["extra_cpu_s"].idxmin(), "servers_needed"]
    return df
