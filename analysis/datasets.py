"""Registry of the real datasets: where each file comes from, its sha256, license and citation.

Every CSV and label file described in ``shared/data/*/SOURCE.md`` has one entry in :data:`REGISTRY`.
``relpath`` is relative to a data root laid out like ``shared/data`` (``msft-cloud-monitoring/...``,
``nab/...``); ``url`` is the upstream raw-file address at the pinned commit.

- :func:`locate` finds a verified local copy (data root from :func:`analysis.paths.data_root`).
- :func:`fetch` downloads into ``data/external/`` (what ``make data`` runs), verifying sha256 and
  keeping no bad file.

Files are read as bytes and hashed; nothing here unpickles or evaluates anything.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import checks, paths
from .atomic import atomic_write_text

__all__ = [
    "Dataset", "REGISTRY", "SOURCES", "MSFT_COMMIT", "NAB_COMMIT", "NOTICES",
    "DownloadError", "get", "names", "locate", "verify", "sha256_file", "fetch", "registry_table",
]

MSFT_COMMIT = "6a07a53c2fac495fb6831811df4c980d6c04bd10"
NAB_COMMIT = "ea702d75cc2258d9d7dd35ca8e5e2539d71f3140"
MSFT_URL = f"https://raw.githubusercontent.com/microsoft/cloud-monitoring-dataset/{MSFT_COMMIT}/data/"
NAB_URL = f"https://raw.githubusercontent.com/numenta/NAB/{NAB_COMMIT}/"

MSFT_CITATION = (
    "Microsoft Cloud Monitoring Dataset, https://github.com/microsoft/cloud-monitoring-dataset "
    f"(commit {MSFT_COMMIT[:7]}), MIT License, Copyright (c) Microsoft Corporation."
)
NAB_CITATION = (
    "Ahmad, S., Lavin, A., Purdy, S., & Agha, Z. (2017). Unsupervised real-time anomaly detection for "
    "streaming data. Neurocomputing. https://doi.org/10.1016/j.neucom.2017.04.070 "
    f"(data: Numenta Anomaly Benchmark v1.1, https://github.com/numenta/NAB, commit {NAB_COMMIT[:7]}, MIT)."
)
MSFT_LICENSE = "MIT (Copyright (c) Microsoft Corporation)"
NAB_LICENSE = "MIT (Copyright 2014-2024 Numenta Inc.)"

_MIT_BODY = """\
Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

#: License notices that must travel with every copy; :func:`fetch` writes them as ``<source>/LICENSE``.
NOTICES = {
    "msft-cloud-monitoring": (
        "Files in this folder: microsoft/cloud-monitoring-dataset, commit "
        f"{MSFT_COMMIT}, paths under data/.\n\n"
        "MIT License\n\nCopyright (c) Microsoft Corporation. All rights reserved.\n\n" + _MIT_BODY
    ),
    "nab": (
        f"Files in this folder: numenta/NAB, commit {NAB_COMMIT}, paths under data/ and labels/.\n\n"
        "MIT License\n\nCopyright 2014-2024 Numenta Inc.\n\n" + _MIT_BODY
    ),
}

#: Upstream repository and commit of each source folder.
SOURCES = {
    "msft-cloud-monitoring": ("https://github.com/microsoft/cloud-monitoring-dataset", MSFT_COMMIT),
    "nab": ("https://github.com/numenta/NAB", NAB_COMMIT),
}


@dataclass(frozen=True)
class Dataset:
    """One real data file.

    fmt: "msft" (``TimeStamp,Value,Label``, UTC ``Z`` stamps) or "nab" (``timestamp,value``, naive stamps;
    the two NAB label files are JSON, ``kind`` "labels"/"windows").
    interval: sampling step as a pandas offset string ("1h", "5min"), "irregular", or "" (label files).
    units: what ``Value`` measures, e.g. "requests/s".
    """

    name: str
    relpath: str
    url: str
    sha256: str
    license: str
    citation: str
    fmt: str
    interval: str
    description: str
    units: str
    title: str = ""
    kind: str = "trace"  # "trace" (a CSV time series), "labels" or "windows" (NAB JSON)

    @property
    def filename(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def source(self) -> str:
        """Top-level folder: "msft-cloud-monitoring" or "nab"."""
        return self.relpath.split("/", 1)[0]

    @property
    def upstream_key(self) -> str:
        """Key of this file in NAB's label JSON (``realKnownCause/nyc_taxi.csv``); "" for other files."""
        if self.source != "nab" or self.kind != "trace":
            return ""
        return self.relpath.split("/", 1)[1]

    @property
    def step(self) -> pd.Timedelta | None:
        """The regular sampling step, or None when irregular or not a time series."""
        if not self.interval or self.interval == "irregular":
            return None
        return pd.Timedelta(self.interval)


def _msft(name, path, sha, interval, units, title, description):
    return Dataset(name=name, relpath=f"msft-cloud-monitoring/{path}", url=MSFT_URL + path, sha256=sha,
                   license=MSFT_LICENSE, citation=MSFT_CITATION, fmt="msft", interval=interval,
                   description=description, units=units, title=title)


def _nab(name, path, sha, interval, units, title, description, kind="trace"):
    upstream = f"data/{path}" if kind == "trace" else path
    return Dataset(name=name, relpath=f"nab/{path}", url=NAB_URL + upstream, sha256=sha,
                   license=NAB_LICENSE, citation=NAB_CITATION, fmt="nab", interval=interval,
                   description=description, units=units, title=title, kind=kind)


_AWS = "realAWSCloudwatch/"
_KC = "realKnownCause/"
_TR = "realTraffic/"

_ENTRIES = [
    # --- Microsoft cloud-monitoring dataset (sha256 from shared/data/msft-cloud-monitoring/SOURCE.md)
    _msft("ecommerce-api-rps", "ecommerce-api-incoming-rps/api-01.csv",
          "d175b5ca4fdca29ad7d7a5b9ebaba440204c5b14872338492bfb084ebf7baf1c", "1h", "requests/s",
          "Microsoft cloud-monitoring e-commerce API",
          "Incoming request rate to an e-commerce API, hourly mean, 2017-11-01..2018-07-16 UTC, 6192 rows, "
          "120 labelled anomaly points (incl. Black Friday 2017-11-24, 2017-12-25). Stamps show a US "
          "daylight-saving artefact: 2017-11-05T01:00Z appears twice and 2018-03-11T02:00Z is missing."),
    _msft("mongodb-app-rps", "mongodb-application-rps/mongo-01.csv",
          "069d04b19b4830df1d1be608c00e841dde6dd7263e266993ca4b8706c875dd80", "1min", "query rate (units not stated)",
          "Microsoft cloud-monitoring MongoDB application query rate",
          "Database query rate by application context, 1-min, 2018-04-25..2018-05-05 UTC, 15840 rows, "
          "no labelled anomaly; every field quoted, CRLF line endings."),
    _msft("dependency-latency-01", "middle-tier-api-dependency-latency/outbound-01.csv",
          "4507624af718e7d6dee7690bd6a71a0eaaba5e97a34146e56268c3eff7721b10", "1h", "latency (units not stated)",
          "Microsoft cloud-monitoring middle-tier dependency latency 01",
          "Outgoing API dependency latency of a middle-tier service, hourly, 2018-06-17..2018-07-16, "
          "720 rows, 8 labelled points."),
    _msft("dependency-latency-02", "middle-tier-api-dependency-latency/outbound-02.csv",
          "35344d24c3b129c8e3e1a86a77219fe8730f2d24736320fa37f10488b304fee3", "1h", "latency (units not stated)",
          "Microsoft cloud-monitoring middle-tier dependency latency 02",
          "Same service, another dependency; 720 rows, 32 labelled points; many zero hours."),
    _msft("dependency-latency-03", "middle-tier-api-dependency-latency/outbound-03.csv",
          "5a82df79f2f8ec393fe45047af36c4f61bef2383f036f8708a44e6bec69109b6", "1h", "latency (units not stated)",
          "Microsoft cloud-monitoring middle-tier dependency latency 03",
          "Same service, another dependency; 720 rows, 14 labelled points."),
    # --- NAB v1.1 (sha256 from shared/data/nab/SOURCE.md)
    _nab("nab-ec2-cpu-24ae8d", _AWS + "ec2_cpu_utilization_24ae8d.csv",
         "ab446fbd8b9f37507eb2fdb06315826d8daeef02e241133ce06e0ee571ba53d9", "5min", "%",
         "NAB AWS EC2 CPU 24ae8d", "AWS CloudWatch EC2 CPUUtilization, 4032 rows, 2014-02-14..2014-02-28."),
    _nab("nab-ec2-cpu-53ea38", _AWS + "ec2_cpu_utilization_53ea38.csv",
         "8942e498de7b40f1b4a6d802755592c09b8fb73ce8f658763a09cb9ea1ea94ac", "5min", "%",
         "NAB AWS EC2 CPU 53ea38", "AWS CloudWatch EC2 CPUUtilization, 4032 rows, 2014-02-14..2014-02-28."),
    _nab("nab-ec2-cpu-5f5533", _AWS + "ec2_cpu_utilization_5f5533.csv",
         "01613e6f632d067f11a5dfd40a188b0789752b388d9bc77a398bd06333878a76", "5min", "%",
         "NAB AWS EC2 CPU 5f5533", "AWS CloudWatch EC2 CPUUtilization, 4032 rows, 2014-02-14..2014-02-28."),
    _nab("nab-ec2-cpu-77c1ca", _AWS + "ec2_cpu_utilization_77c1ca.csv",
         "90ceabd570b449241ee24ff8a116a793979b7671ce4490707311bfea0e0aae1f", "5min", "%",
         "NAB AWS EC2 CPU 77c1ca", "AWS CloudWatch EC2 CPUUtilization, 4032 rows, 2014-04-02..2014-04-16."),
    _nab("nab-ec2-cpu-825cc2", _AWS + "ec2_cpu_utilization_825cc2.csv",
         "d768419037c9db269343822957314f57ee21a7d9a4d41df2add0d1ba45ba84de", "5min", "%",
         "NAB AWS EC2 CPU 825cc2",
         "AWS CloudWatch EC2 CPUUtilization, 4032 rows, 2014-04-10..2014-04-24; 1-2 missing steps."),
    _nab("nab-ec2-cpu-ac20cd", _AWS + "ec2_cpu_utilization_ac20cd.csv",
         "749a15c2e1a4543c21fee9cbf3338cd8a7ed5f5f8a1308b9b099b06c2c66e66b", "5min", "%",
         "NAB AWS EC2 CPU ac20cd",
         "AWS CloudWatch EC2 CPUUtilization, 4032 rows, 2014-04-02..2014-04-16; 1-2 missing steps."),
    _nab("nab-ec2-cpu-c6585a", _AWS + "ec2_cpu_utilization_c6585a.csv",
         "d936cea74682ed43ac96b778352d7de294c0b0c168f4a7e6817162346cdb28c1", "5min", "%",
         "NAB AWS EC2 CPU c6585a",
         "AWS CloudWatch EC2 CPUUtilization, 4032 rows, 2014-04-02..2014-04-16; no labelled anomaly."),
    _nab("nab-ec2-cpu-fe7f93", _AWS + "ec2_cpu_utilization_fe7f93.csv",
         "f3433f8171f4dcea86c0c7af9996d0f166f812fa0f4567f1d5cd85d2d2cd69b4", "5min", "%",
         "NAB AWS EC2 CPU fe7f93", "AWS CloudWatch EC2 CPUUtilization, 4032 rows, 2014-02-14..2014-02-28."),
    _nab("nab-ec2-disk-write-1ef3de", _AWS + "ec2_disk_write_bytes_1ef3de.csv",
         "ce3d6c6a652ed7c31a6dd3727a36e128fcac6fb2381c63267ad0fbc02eccd9df", "5min", "bytes per 5 min",
         "NAB AWS EC2 disk write bytes 1ef3de",
         "AWS CloudWatch EC2 DiskWriteBytes, 4730 rows, 2014-03-01..2014-03-18; DST artefact at "
         "2014-03-09: ~1 h gap then 12 rows stamped 03:00:00 (duplicates)."),
    _nab("nab-ec2-disk-write-c0d644", _AWS + "ec2_disk_write_bytes_c0d644.csv",
         "a0e734a66098bb81833835f0839dadafbc8ae829c51494670ee8849e46eb5b63", "5min", "bytes per 5 min",
         "NAB AWS EC2 disk write bytes c0d644",
         "AWS CloudWatch EC2 DiskWriteBytes, 4032 rows, 2014-04-02..2014-04-16."),
    _nab("nab-ec2-network-in-257a54", _AWS + "ec2_network_in_257a54.csv",
         "39104b08f2e0a673b5137eb7681897fcadf0955fedf565740a6a94edc63a81a4", "5min", "bytes per 5 min",
         "NAB AWS EC2 network in 257a54",
         "AWS CloudWatch EC2 NetworkIn, 4032 rows, 2014-04-10..2014-04-24; 1-2 missing steps."),
    _nab("nab-ec2-network-in-5abac7", _AWS + "ec2_network_in_5abac7.csv",
         "c27ef93f582af63bf42e80d804764cbe64ae987620f3cfab5477d6ebb3c6157e", "5min", "bytes per 5 min",
         "NAB AWS EC2 network in 5abac7",
         "AWS CloudWatch EC2 NetworkIn, 4730 rows, 2014-03-01..2014-03-18; DST artefact at 2014-03-09 "
         "(gap, then duplicate 03:00:00 stamps)."),
    _nab("nab-elb-requests-8c0756", _AWS + "elb_request_count_8c0756.csv",
         "74c26574a01ca9fb89dddb5021e2e13c3a93eb25dc640438a9acb1ceb00f1021", "5min", "requests per 5 min",
         "NAB AWS ELB request count 8c0756",
         "AWS CloudWatch ELB RequestCount, 4032 rows, 2014-04-10..2014-04-24; 8 single missing steps."),
    _nab("nab-grok-asg", _AWS + "grok_asg_anomaly.csv",
         "86a0abe9d58e376858d2fd4f4a438f1997e24c64a09e5af03accd4e1b372ac47", "5min", "not stated",
         "NAB AWS auto-scaling group metric (Grok)",
         "AWS Auto Scaling group metric monitored by Numenta Grok, 4621 rows, 2014-01-16..2014-02-01."),
    _nab("nab-iio-network-in", _AWS + "iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
         "f115fbe6542159eed5612445bfa620708a28ab6b41349d1432bb15c3a3b8414d", "5min", "bytes",
         "NAB AWS EC2 network in i-a2eb1cd9",
         "AWS CloudWatch EC2 NetworkIn, instance i-a2eb1cd9 us-east-1, 1243 rows, 2013-10-09..2013-10-13."),
    _nab("nab-rds-cpu-cc0c53", _AWS + "rds_cpu_utilization_cc0c53.csv",
         "d5df979ef85928769a016cd0f935919d8c2a113926e21e1eb3a5001d688760e2", "5min", "%",
         "NAB AWS RDS CPU cc0c53",
         "AWS CloudWatch RDS CPUUtilization, 4032 rows, 2014-02-14..2014-02-28; 1-2 missing steps."),
    _nab("nab-rds-cpu-e47b3b", _AWS + "rds_cpu_utilization_e47b3b.csv",
         "6b712b922ab3b3404c5a629d64a570c390c99471ee8b9b0ff7665f553fda92c1", "5min", "%",
         "NAB AWS RDS CPU e47b3b", "AWS CloudWatch RDS CPUUtilization, 4032 rows, 2014-04-10..2014-04-23."),
    _nab("nab-ambient-temperature", _KC + "ambient_temperature_system_failure.csv",
         "230b68ccca20f59d562afd5d24ad52939c9b784386bed0054018358bf9120581", "1h", "degF (presumably)",
         "NAB office ambient temperature",
         "Office ambient temperature with a known system failure, 7267 rows, 2013-07-04..2014-05-28; "
         "10 gaps, the longest 174 h."),
    _nab("nab-asg-misconfiguration", _KC + "cpu_utilization_asg_misconfiguration.csv",
         "58ba65dc0737cfbac11b51514476d50c438d44011232144bb8d93f392df58f9f", "5min", "%",
         "NAB AWS auto-scaling cluster CPU (ASG misconfiguration)",
         "Average CPU across an auto-scaling cluster; anomaly = ASG misconfiguration; 18050 rows, "
         "2014-05-14..2014-07-15."),
    _nab("nab-ec2-request-latency", _KC + "ec2_request_latency_system_failure.csv",
         "98378580aa80157e057c61d59d81daddccc6c65a2c0c800e3f01f603b8215c3f", "5min", "not stated",
         "NAB EC2 server metric before an AWS API failure",
         "EC2 server metric, us-east (file name says request latency, NAB README says CPU usage); ends in "
         "a documented AWS API failure; 4032 rows; DST artefact at 2014-03-09 (gap, duplicate stamps)."),
    _nab("nab-machine-temperature", _KC + "machine_temperature_system_failure.csv",
         "92bf5b87fc7f9bba8ca0b7ec63ccaac8cb4a1371a258e8c29a10ae9c018d82a4", "5min", "not stated",
         "NAB industrial machine temperature",
         "Internal-component temperature sensor of an industrial machine; planned shutdown and failure; "
         "22695 rows; goes backwards once (2014-01-07 02:55 -> 02:00, one hour repeated)."),
    _nab("nab-nyc-taxi", _KC + "nyc_taxi.csv",
         "d8fa6f7f0734bf5c8be12c52a94e20a82664c397d9dec4449156bd453d32856d", "30min", "passengers per 30 min",
         "NAB NYC taxi passengers",
         "NYC taxi passengers per 30-min bucket (NYC TLC trip records), 10320 rows, 2014-07-01..2015-01-31; "
         "anomalies: NYC marathon, Thanksgiving, Christmas, New Year, Jan-2015 blizzard."),
    _nab("nab-rogue-key-hold", _KC + "rogue_agent_key_hold.csv",
         "47b110baa8e3636574c1033dda1cce780873647fab58223d159d4fee6f180e86", "irregular", "not stated",
         "NAB keyboard key-hold timing",
         "Key-hold timing for several users; anomaly = user change; 1882 rows; mode step 5 min, 91 gaps; "
         "CRLF line endings."),
    _nab("nab-rogue-key-updown", _KC + "rogue_agent_key_updown.csv",
         "9797cfef477c13306f7a33874ab4d6cf700f8f2c7e5825a2a5bc02004370909a", "5min", "not stated",
         "NAB keyboard key up/down timing",
         "Key up/down timing for several users; anomaly = user change; 5315 rows; CRLF line endings."),
    _nab("nab-traffic-traveltime-387", _TR + "TravelTime_387.csv",
         "38e70e9ead8227fd023bff6e93247d5bc01ee008f781b921a156962419b399bb", "irregular", "not stated",
         "NAB MnDOT travel time 387",
         "MnDOT Twin Cities road sensor travel time; irregular (mode 10 min); 2500 rows."),
    _nab("nab-traffic-traveltime-451", _TR + "TravelTime_451.csv",
         "7c174adfc457b201cd111d60688f7ec37eb7201c8080790dc41eeff477bd7345", "irregular", "not stated",
         "NAB MnDOT travel time 451",
         "MnDOT Twin Cities road sensor travel time; irregular (mode 10 min); 2162 rows."),
    _nab("nab-traffic-occupancy-6005", _TR + "occupancy_6005.csv",
         "cd357d7820d675074270fd976d4af1fc1e7854ecb764783028cbcb18d980c91d", "irregular", "%",
         "NAB MnDOT occupancy 6005", "MnDOT road sensor occupancy; irregular (mode 5 min); 2380 rows."),
    _nab("nab-traffic-occupancy-t4013", _TR + "occupancy_t4013.csv",
         "5663a8122a300360eb51fbbd0f21706da05af1af55262926d6a226bb6d071704", "irregular", "%",
         "NAB MnDOT occupancy t4013",
         "MnDOT road sensor occupancy; irregular (mode 5 min); 2500 rows; one repeated timestamp."),
    _nab("nab-traffic-speed-6005", _TR + "speed_6005.csv",
         "7976e7596cd1e579696c737576e96a26fe041484472ed7d0a463ce2b094d7aa7", "irregular", "mph (likely)",
         "NAB MnDOT speed 6005", "MnDOT road sensor speed; irregular (mode 5 min); 2500 rows."),
    _nab("nab-traffic-speed-7578", _TR + "speed_7578.csv",
         "15ba994384730cb5a2e6818f17ded1430b40d92eb7a08e5b1a48a445c8c350f6", "irregular", "mph (likely)",
         "NAB MnDOT speed 7578", "MnDOT road sensor speed; irregular (mode 5 min); 1127 rows."),
    _nab("nab-traffic-speed-t4013", _TR + "speed_t4013.csv",
         "fa5532d6f7db36cadc73e657fd4dfef05cb1ec44d4010243b314d3f1bbd6a7b5", "irregular", "mph (likely)",
         "NAB MnDOT speed t4013",
         "MnDOT road sensor speed; irregular (mode 5 min); 2495 rows; one repeated timestamp."),
    _nab("nab-twitter-amzn", "realTweets/Twitter_volume_AMZN.csv",
         "234f5e63f19a62720dfb7ccfd6ecc8349b94d93b33ef8aafbdb17edda0b654f3", "5min", "tweets per 5 min",
         "NAB Twitter mentions of AMZN",
         "Count of Twitter mentions of ticker AMZN per 5 min, 15831 rows, 2015-02-26..2015-04-22."),
    _nab("nab-labels", "labels/combined_labels.json",
         "98724014c162fcfd4be605683517f194051a54e98756c53667bd33ddbc644d9b", "", "",
         "NAB anomaly point labels",
         "Maps '<dir>/<file>.csv' to a list of anomaly timestamps (all 58 NAB files).", kind="labels"),
    _nab("nab-windows", "labels/combined_windows.json",
         "1e1fbc4601321aad8d0f8b3784c8134299379f68f6c1f7777565f8ffd57ab6b1", "", "",
         "NAB anomaly windows",
         "Maps '<dir>/<file>.csv' to a list of [start, end] anomaly windows (all 58 NAB files).",
         kind="windows"),
]

#: name -> Dataset, in a stable order (Microsoft first, then NAB).
REGISTRY: dict[str, Dataset] = {d.name: d for d in _ENTRIES}
assert len(REGISTRY) == len(_ENTRIES), "duplicate dataset name"


class DownloadError(OSError):
    """A dataset could not be downloaded (network or HTTP failure)."""


def names() -> list[str]:
    """All registered dataset names."""
    return list(REGISTRY)


def get(name: str) -> Dataset:
    """The registry entry for ``name``; ValueError listing the valid names otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {checks.show(name)}; valid names: {', '.join(REGISTRY)}") from None


def registry_table() -> pd.DataFrame:
    """The registry as a DataFrame (one row per file), for notebooks and the data README."""
    rows = [{"name": d.name, "file": d.relpath, "interval": d.interval, "units": d.units,
             "license": d.license, "sha256": d.sha256, "url": d.url} for d in REGISTRY.values()]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- hashing
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, cached per (resolved path, size, mtime) so repeated calls are cheap."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    cached = _HASH_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    _HASH_CACHE[key] = value
    return value


def verify(path: str | os.PathLike, expected: str, what: str = "") -> Path:
    """Check that ``path`` has sha256 ``expected``; ValueError naming the file and both hashes otherwise."""
    path = Path(path)
    actual = sha256_file(path)
    if actual != expected:
        label = f"{what} " if what else ""
        raise ValueError(f"{label}{path}: sha256 mismatch: expected {expected}, actual {actual} "
                         "(the file is corrupt, truncated or a different version; delete it and run "
                         "`make data`)")
    return path


def locate(name: str, data_dir: str | os.PathLike | None = "") -> Path | None:
    """Verified local copy of dataset ``name``; None only when the default lookup finds no copy.

    The data root comes from :func:`analysis.paths.data_lookup` (``data_dir``, then ``KIT_DATA_DIR``, then
    ``data/external``). When the user named the location (``data_dir`` or ``KIT_DATA_DIR``) the file must be
    there: FileNotFoundError naming the expected path otherwise (ValueError when that path is a directory),
    so explicit data is never silently replaced by the synthetic default. A file whose sha256 differs from
    the registry raises ValueError naming the file, the expected and the actual hash.
    """
    ds = get(name)
    root, named_by = paths.data_lookup(data_dir)
    if root is None:
        return None
    path = root / ds.relpath
    if path.is_file():
        return verify(path, ds.sha256, what=f"dataset {name!r}:")
    if not named_by:
        return None  # default lookup (data/external): the caller may use its synthetic default
    where = f"{named_by} names a data folder (layout of shared/data)"
    if path.is_dir():
        raise ValueError(f"dataset {name!r}: {where}, but {path} is a directory, not the data file")
    hint = _misplaced(root, ds)
    raise FileNotFoundError(f"dataset {name!r}: {where}, but the file {path} does not exist"
                            + (f"; found {hint} instead: point the location at the folder that holds "
                               f"{ds.source}/" if hint else "")
                            + (" (leave data_dir empty" if named_by.startswith("data_dir=") else
                               f" (unset {paths.DATA_ENV_VAR}") + " for the kit's default lookup)")


def _misplaced(root: Path, ds: Dataset) -> Path | None:
    """A copy of ``ds`` at a near-miss place: flat in ``root``, ``root`` one level inside the layout
    (``root/<path without its source folder>``), or one folder too deep (``root/*/relpath``,
    ``<expected folder>/*/file``). Cheap: no recursive search."""
    expected = root / ds.relpath
    candidates = [root / ds.filename, root / ds.relpath.split("/", 1)[1]]
    for folder, tail in ((root, ds.relpath), (expected.parent, ds.filename)):
        try:
            candidates += [child / tail for child in sorted(folder.iterdir()) if child.is_dir()]
        except OSError:
            pass
    return next((c for c in candidates if _is_file(c)), None)


def _is_file(path: Path) -> bool:
    """Path.is_file that answers False for an unreadable folder instead of raising PermissionError."""
    try:
        return path.is_file()
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- fetch
#: The function used to open URLs; tests replace it to serve bytes without a network.
_urlopen = urllib.request.urlopen

_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)


def _download(ds: Dataset, target: Path, timeout: float) -> None:
    """Download ``ds`` into ``target`` via a temporary file; verified before it is moved into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(ds.url, headers={"User-Agent": "cloud-scalability-kit"})
            with _urlopen(request, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    digest.update(chunk)
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != ds.sha256:
            raise ValueError(f"dataset {ds.name!r}: {ds.url} downloaded with sha256 {actual}, expected "
                             f"{ds.sha256}; the download was deleted and {target} not written")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _env_copy(ds: Dataset) -> Path | None:
    """Verified copy under the directory named by KIT_DATA_DIR, if any."""
    env = os.environ.get(paths.DATA_ENV_VAR, "")
    if not env:
        return None
    candidate = Path(env).expanduser() / ds.relpath
    if not candidate.is_file():
        return None
    return verify(candidate, ds.sha256, what=f"dataset {ds.name!r} ({paths.DATA_ENV_VAR}):")


def fetch(names: list[str] | tuple[str, ...] | str | None = None, dest: str | os.PathLike = paths.DATA_EXTERNAL,
          best_effort: bool = False, timeout: float = 30) -> pd.DataFrame:
    """Download and verify datasets into ``dest`` (layout of ``shared/data``); what ``make data`` runs.

    Per file: a verified copy under ``KIT_DATA_DIR`` -> "present (KIT_DATA_DIR)" (no download); a verified
    file already in ``dest`` -> "present"; otherwise download to a temporary file, check sha256, move into
    place -> "downloaded". A checksum mismatch deletes the download and raises ValueError (never keeps a
    bad file). A network failure raises :class:`DownloadError`, or with ``best_effort=True`` is reported as
    "unavailable: <reason>" and a notice says notebooks will use the embedded synthetic default.
    ``timeout`` is in seconds per connection. Returns a DataFrame with columns name, status, path.
    """
    if names is None:
        selected = list(REGISTRY.values())
    else:
        if isinstance(names, str):
            names = [names]
        selected = [get(n) for n in names]
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout={checks.show(timeout)}: must be a positive number of seconds")
    dest = Path(dest).expanduser()
    env = os.environ.get(paths.DATA_ENV_VAR, "")
    if env and not Path(env).expanduser().is_dir():
        raise ValueError(f"environment variable {paths.DATA_ENV_VAR}={env!r}: no such directory (unset it to "
                         f"download into {dest}, or point it at a copy of the data)")

    rows = []
    network_down = ""
    for ds in selected:
        env_copy = _env_copy(ds)
        if env_copy is not None:
            rows.append((ds.name, f"present ({paths.DATA_ENV_VAR})", str(env_copy)))
            continue
        target = dest / ds.relpath
        status = "downloaded"
        if target.is_file():
            if sha256_file(target) == ds.sha256:
                rows.append((ds.name, "present", str(target)))
                continue
            target.unlink()  # a stale or corrupt copy is never kept
            status = "downloaded (replaced a file with the wrong sha256)"
        if network_down:
            rows.append((ds.name, f"unavailable: skipped after network failure ({network_down})", ""))
            continue
        try:
            try:
                _download(ds, target, timeout)
            finally:
                if not target.exists():
                    _prune_empty_dirs(target.parent, dest)
        except ValueError:
            raise
        except _NETWORK_ERRORS as exc:
            reason = _reason(exc)
            if not best_effort:
                raise DownloadError(f"dataset {ds.name!r}: could not download {ds.url}: {reason} "
                                    "(use best_effort=True / `--best-effort` to continue without it)") from exc
            if not isinstance(exc, urllib.error.HTTPError):
                network_down = reason  # do not wait for a timeout on every remaining file
            rows.append((ds.name, f"unavailable: {reason}", ""))
            continue
        _write_notice(dest, ds.source)
        rows.append((ds.name, status, str(target)))

    table = pd.DataFrame(rows, columns=["name", "status", "path"])
    missing = table[table["status"].str.startswith("unavailable")]
    if len(missing):
        print(f"NOTICE: {len(missing)} of {len(table)} dataset file(s) could not be downloaded "
              f"(first reason: {missing['status'].iloc[0][len('unavailable: '):]}). Notebooks will use the "
              f"embedded synthetic default in {paths.DATA_SYNTHETIC} where real data is missing, and say so "
              "in every caption.", file=sys.stderr)
    return table


def _prune_empty_dirs(folder: Path, stop: Path) -> None:
    """Remove the empty folders a failed download created, up to (not including) ``stop``.

    An empty ``data/external/<source>/`` would otherwise look like downloaded data to paths.data_root.
    """
    folder, stop = folder.resolve(), stop.resolve()
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _write_notice(dest: Path, source: str) -> None:
    """Write the source's license notice next to downloaded files (MIT: the notice travels with copies)."""
    notice = dest / source / "LICENSE"
    text = NOTICES[source]
    if not notice.is_file() or notice.read_text(encoding="utf-8") != text:
        atomic_write_text(notice, text)
