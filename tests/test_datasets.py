"""Dataset registry, local lookup with sha256 verification, and download (no network: the opener is faked)."""
from __future__ import annotations

import hashlib
import io
import os
import re
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import datasets, paths
from conftest import REAL_DATA, SHARED_DATA, requires_real_data

README = paths.DATA / "README.md"
FAKE_BYTES = b"timestamp,value\n2014-01-01 00:00:00,1.5\n2014-01-01 00:05:00,2.5\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake(monkeypatch):
    """A registered dataset whose bytes are FAKE_BYTES, so fetch/locate run without the real data."""
    ds = datasets.Dataset(
        name="fake-trace", relpath="fake-source/sub/fake.csv", url="https://example.invalid/fake.csv",
        sha256=_sha(FAKE_BYTES), license="MIT", citation="none", fmt="nab", interval="5min",
        description="test file", units="1")
    ds2 = datasets.Dataset(
        name="fake-trace-2", relpath="fake-source/sub/fake2.csv", url="https://example.invalid/fake2.csv",
        sha256=_sha(FAKE_BYTES + b"x"), license="MIT", citation="none", fmt="nab", interval="5min",
        description="test file", units="1")
    monkeypatch.setitem(datasets.REGISTRY, ds.name, ds)
    monkeypatch.setitem(datasets.REGISTRY, ds2.name, ds2)
    monkeypatch.setitem(datasets.NOTICES, "fake-source", "fake notice\n")
    return ds


class Opener:
    """Stands in for urllib.request.urlopen: serves bytes per URL, counts calls."""

    def __init__(self, content=None, error=None):
        self.content = content or {}
        self.error = error
        self.calls: list[str] = []

    def __call__(self, request, timeout=None):
        url = request.full_url if hasattr(request, "full_url") else request
        self.calls.append(url)
        assert timeout is not None and timeout > 0
        if self.error is not None:
            raise self.error
        return io.BytesIO(self.content[url])


# ------------------------------------------------------------------------------------------------ registry
def test_registry_entries_are_complete():
    assert len(datasets.REGISTRY) == 5 + 32 + 2
    for name, ds in datasets.REGISTRY.items():
        assert name == ds.name
        assert re.fullmatch(r"[0-9a-f]{64}", ds.sha256), name
        assert ds.fmt in ("msft", "nab") and ds.kind in ("trace", "labels", "windows")
        assert ds.source in datasets.SOURCES and ds.source in datasets.NOTICES
        commit = datasets.SOURCES[ds.source][1]
        assert ds.url.startswith("https://raw.githubusercontent.com/") and f"/{commit}/" in ds.url
        assert ds.url.endswith(ds.relpath.split("/", 1)[1])
        assert ds.license.startswith("MIT") and ds.citation and ds.description
        if ds.kind == "trace":
            assert ds.interval == "irregular" or ds.step > pd.Timedelta(0)
    assert len({d.relpath for d in datasets.REGISTRY.values()}) == len(datasets.REGISTRY)
    for expected in ("ecommerce-api-rps", "mongodb-app-rps", "dependency-latency-01", "dependency-latency-03",
                     "nab-nyc-taxi", "nab-twitter-amzn", "nab-ec2-cpu-24ae8d", "nab-labels", "nab-windows"):
        assert expected in datasets.REGISTRY
    assert datasets.get("ecommerce-api-rps").units == "requests/s"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'.*ecommerce-api-rps"):
        datasets.get("nope")


def _source_md(folder: Path) -> tuple[dict[str, str], list[str]]:
    """sha256 per relpath (under the source folder) and the download URL patterns of one SOURCE.md."""
    text = (folder / "SOURCE.md").read_text(encoding="utf-8")
    sums = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-f]{64})\s+(\S+)", line.strip())
        if m:
            sums[f"{folder.name}/{m.group(2)}"] = m.group(1)
    patterns = re.findall(r"`(https://raw\.githubusercontent\.com/[^`]*<path>)`", text)
    return sums, patterns


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared/data (with its SOURCE.md files) is absent")
def test_registry_matches_source_md():
    by_relpath = {d.relpath: d for d in datasets.REGISTRY.values()}
    folders = sorted(p.parent for p in SHARED_DATA.glob("*/SOURCE.md"))
    assert folders, "no SOURCE.md found"
    seen = set()
    for folder in folders:
        sums, patterns = _source_md(folder)
        assert sums and len(patterns) == 1, folder
        prefix = patterns[0].split("<path>")[0]
        for relpath, sha in sums.items():
            assert relpath in by_relpath, f"{relpath} listed in {folder}/SOURCE.md but not registered"
            ds = by_relpath[relpath]
            assert ds.sha256 == sha, relpath
            assert ds.url.startswith(prefix), (ds.url, prefix)
            seen.add(relpath)
    assert seen == set(by_relpath), "registered files missing from SOURCE.md"


def test_readme_lists_every_dataset():
    text = README.read_text(encoding="utf-8")
    for ds in datasets.REGISTRY.values():
        assert f"`{ds.name}`" in text and ds.sha256 in text, ds.name
    for phrase in ("make data", "KIT_DATA_DIR", "Copyright (c) Microsoft Corporation",
                   "Copyright 2014-2024 Numenta Inc.", "10.1016/j.neucom.2017.04.070", "SHA256SUMS"):
        assert phrase in text


# ------------------------------------------------------------------------------------------------ locate
def test_locate_without_root_or_file_returns_none(no_real_data, tmp_path):
    assert paths.data_root("") is None
    assert datasets.locate("ecommerce-api-rps") is None
    with pytest.raises(ValueError, match="no such directory"):
        datasets.locate("ecommerce-api-rps", data_dir=tmp_path / "missing")


# A named data location (data_dir or KIT_DATA_DIR) that lacks the file is an error naming the expected path;
# only the default lookup may return None (and so fall back to the synthetic default).
API = datasets.get("ecommerce-api-rps")


def test_named_empty_folder_is_an_error_naming_the_expected_file(no_real_data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        datasets.locate(API.name, data_dir=empty)
    msg = str(info.value)
    assert str(empty / API.relpath) in msg and f"data_dir={str(empty)!r}" in msg


def test_named_folder_with_the_file_one_level_too_deep(no_real_data, tmp_path):
    root = tmp_path / "root"
    deep = root / "download" / API.relpath
    deep.parent.mkdir(parents=True)
    deep.write_bytes(b"TimeStamp,Value,Label\n")
    with pytest.raises(FileNotFoundError) as info:
        datasets.locate(API.name, data_dir=root)
    msg = str(info.value)
    assert str(root / API.relpath) in msg and f"found {deep}" in msg


def test_named_folder_where_the_csv_is_a_directory(no_real_data, tmp_path):
    (tmp_path / API.relpath).mkdir(parents=True)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / API.relpath} is a directory")):
        datasets.locate(API.name, data_dir=tmp_path)


def test_named_system_folder_is_an_error(no_real_data):
    with pytest.raises(FileNotFoundError, match=re.escape(f"/etc/{API.relpath} does not exist")):
        datasets.locate(API.name, data_dir="/etc")


def test_kit_data_dir_without_the_file_is_an_error_naming_the_variable(no_real_data, tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        datasets.locate(API.name)
    msg = str(info.value)
    assert f"{paths.DATA_ENV_VAR}={str(tmp_path)!r}" in msg and str(tmp_path / API.relpath) in msg


def test_default_lookup_without_the_file_returns_none(no_real_data):
    # data/external holds another source only: the default lookup has no copy, which is not an error
    (no_real_data / "nab").mkdir()
    assert paths.data_lookup("") == (no_real_data, "")
    assert datasets.locate(API.name) is None


def test_fetch_names_a_kit_data_dir_that_does_not_exist(fake, tmp_path, monkeypatch):
    opener = Opener(error=urllib.error.URLError("network is off in tests"))
    monkeypatch.setattr(datasets, "_urlopen", opener)
    monkeypatch.setenv(paths.DATA_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=f"{paths.DATA_ENV_VAR}=.*nowhere.*no such directory"):
        datasets.fetch([fake.name], dest=tmp_path / "external")
    assert opener.calls == []


def test_data_command_names_a_kit_data_dir_that_does_not_exist(tmp_path, monkeypatch, capsys):
    from analysis.__main__ import main

    opener = Opener(error=urllib.error.URLError("network is off in tests"))
    monkeypatch.setattr(datasets, "_urlopen", opener)
    monkeypatch.setenv(paths.DATA_ENV_VAR, str(tmp_path / "nowhere"))
    assert main(["data"]) == 1
    err = capsys.readouterr().err
    assert f"{paths.DATA_ENV_VAR}={str(tmp_path / 'nowhere')!r}" in err and "no such directory" in err
    assert opener.calls == []


def test_messages_show_plain_numbers(fake):
    with pytest.raises(ValueError, match=r"timeout=-1\.0: must be") as info:
        datasets.fetch([fake.name], timeout=np.float64(-1.0))
    assert "np." not in str(info.value)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        datasets.get(np.str_("nope"))


def _put(root: Path, ds: datasets.Dataset, data: bytes) -> Path:
    path = root / ds.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_locate_verifies_and_caches(fake, tmp_path, monkeypatch):
    path = _put(tmp_path, fake, FAKE_BYTES)
    calls = []
    real_sha256 = hashlib.sha256

    def counting(*args):
        calls.append(1)
        return real_sha256(*args)

    monkeypatch.setattr(datasets.hashlib, "sha256", counting)
    assert datasets.locate(fake.name, data_dir=tmp_path).resolve() == path.resolve()
    n = len(calls)
    for _ in range(5):
        datasets.locate(fake.name, data_dir=tmp_path)
    assert len(calls) == n, "verification is cached per (path, size, mtime)"

    # same size, different content and mtime: the cache must not hide the corruption
    corrupt = FAKE_BYTES.replace(b"1.5", b"9.5")
    path.write_bytes(corrupt)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    with pytest.raises(ValueError) as info:
        datasets.locate(fake.name, data_dir=tmp_path)
    msg = str(info.value)
    assert "fake.csv" in msg and fake.sha256 in msg and _sha(corrupt) in msg


@requires_real_data
def test_locate_every_real_file():
    for name, ds in datasets.REGISTRY.items():
        path = datasets.locate(name, data_dir=REAL_DATA)
        assert path is not None and path.name == ds.filename, name


# ------------------------------------------------------------------------------------------------ fetch
def test_fetch_downloads_verifies_and_is_idempotent(fake, no_real_data, tmp_path, monkeypatch):
    opener = Opener({fake.url: FAKE_BYTES})
    monkeypatch.setattr(datasets, "_urlopen", opener)
    dest = tmp_path / "external"
    table = datasets.fetch([fake.name], dest=dest)
    assert list(table.columns) == ["name", "status", "path"]
    assert table.loc[0, "status"] == "downloaded"
    target = dest / fake.relpath
    assert Path(table.loc[0, "path"]) == target and target.read_bytes() == FAKE_BYTES
    assert (dest / "fake-source" / "LICENSE").read_text() == "fake notice\n"
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".part")]
    assert opener.calls == [fake.url]

    again = datasets.fetch([fake.name], dest=dest)
    assert again.loc[0, "status"] == "present" and opener.calls == [fake.url]
    # the downloaded folder is a data root for locate
    assert datasets.locate(fake.name, data_dir=dest) is not None


def test_fetch_checksum_mismatch_keeps_no_file(fake, no_real_data, tmp_path, monkeypatch):
    bad = FAKE_BYTES.replace(b"2.5", b"2.6")
    monkeypatch.setattr(datasets, "_urlopen", Opener({fake.url: bad}))
    dest = tmp_path / "external"
    with pytest.raises(ValueError) as info:
        datasets.fetch([fake.name], dest=dest)
    msg = str(info.value)
    assert "fake-trace" in msg and fake.sha256 in msg and _sha(bad) in msg
    assert not (dest / fake.relpath).exists()
    assert [p for p in dest.rglob("*")] == [], "the bad download, its temp file or empty folders were kept"


def test_fetch_replaces_a_corrupt_existing_file(fake, no_real_data, tmp_path, monkeypatch):
    dest = tmp_path / "external"
    _put(dest, fake, b"truncated")
    monkeypatch.setattr(datasets, "_urlopen", Opener({fake.url: FAKE_BYTES}))
    table = datasets.fetch([fake.name], dest=dest)
    assert table.loc[0, "status"].startswith("downloaded (replaced")
    assert (dest / fake.relpath).read_bytes() == FAKE_BYTES


def test_fetch_uses_verified_kit_data_dir_copy(fake, tmp_path, monkeypatch):
    root = tmp_path / "kit-data"
    _put(root, fake, FAKE_BYTES)
    monkeypatch.setenv(paths.DATA_ENV_VAR, str(root))
    opener = Opener(error=AssertionError("must not download"))
    monkeypatch.setattr(datasets, "_urlopen", opener)
    dest = tmp_path / "external"
    table = datasets.fetch([fake.name], dest=dest)
    assert table.loc[0, "status"] == "present (KIT_DATA_DIR)"
    assert Path(table.loc[0, "path"]) == root / fake.relpath
    assert opener.calls == [] and not dest.exists()


def test_fetch_network_failure_best_effort(fake, no_real_data, tmp_path, monkeypatch, capsys):
    opener = Opener(error=urllib.error.URLError("Temporary failure in name resolution"))
    monkeypatch.setattr(datasets, "_urlopen", opener)
    dest = tmp_path / "external"
    table = datasets.fetch([fake.name, "fake-trace-2"], dest=dest, best_effort=True, timeout=1)
    assert table["status"].str.startswith("unavailable: ").all()
    assert "name resolution" in table.loc[0, "status"]
    assert "skipped after network failure" in table.loc[1, "status"]
    assert len(opener.calls) == 1, "after a network failure the other files must not each wait for a timeout"
    err = capsys.readouterr().err
    assert "NOTICE" in err and "synthetic default" in err
    assert not (dest / fake.relpath).exists()
    assert [p for p in dest.rglob("*")] == [], "a failed download left files or empty folders behind"


def test_fetch_network_failure_strict_raises(fake, no_real_data, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_urlopen", Opener(error=urllib.error.HTTPError(
        fake.url, 404, "Not Found", {}, None)))
    with pytest.raises(datasets.DownloadError, match="fake-trace.*HTTP 404"):
        datasets.fetch([fake.name], dest=tmp_path / "external")


def test_fetch_rejects_bad_arguments_before_downloading(monkeypatch, tmp_path):
    opener = Opener(error=AssertionError("must not download"))
    monkeypatch.setattr(datasets, "_urlopen", opener)
    with pytest.raises(ValueError, match="unknown dataset 'no-such'"):
        datasets.fetch(["ecommerce-api-rps", "no-such"], dest=tmp_path)
    with pytest.raises(ValueError, match="timeout"):
        datasets.fetch(["ecommerce-api-rps"], dest=tmp_path, timeout=0)
    assert opener.calls == []


@requires_real_data
def test_fetch_real_files_from_served_bytes(no_real_data, tmp_path, monkeypatch):
    """Serve the shared copy's bytes at the registry URLs: the result must be byte-identical and verified."""
    names = ["ecommerce-api-rps", "nab-nyc-taxi", "nab-labels"]
    content = {datasets.REGISTRY[n].url: (REAL_DATA / datasets.REGISTRY[n].relpath).read_bytes() for n in names}
    monkeypatch.setattr(datasets, "_urlopen", Opener(content))
    dest = tmp_path / "external"
    table = datasets.fetch(names, dest=dest)
    assert (table["status"] == "downloaded").all()
    for n in names:
        ds = datasets.REGISTRY[n]
        assert (dest / ds.relpath).read_bytes() == (REAL_DATA / ds.relpath).read_bytes()
        assert datasets.locate(n, data_dir=dest) is not None
    assert "Microsoft Corporation" in (dest / "msft-cloud-monitoring" / "LICENSE").read_text()
    assert "Numenta" in (dest / "nab" / "LICENSE").read_text()


def test_loading_code_never_unpickles_or_evaluates():
    for module in ("datasets.py", "workloads.py"):
        source = (paths.ROOT / "analysis" / module).read_text(encoding="utf-8")
        assert not re.search(r"import pickle|pickle\.|read_pickle|allow_pickle|\beval\(|\bexec\(|literal_eval", source), module


def test_named_location_that_is_a_file_says_so(no_real_data, tmp_path, monkeypatch):
    a_file = tmp_path / "api-01.csv"
    a_file.write_text("TimeStamp,Value,Label\n")
    with pytest.raises(ValueError, match=re.escape(f"data_dir={str(a_file)!r}: not a directory")):
        datasets.locate(API.name, data_dir=a_file)
    monkeypatch.setenv(paths.DATA_ENV_VAR, str(a_file))
    with pytest.raises(ValueError, match=re.escape(f"{paths.DATA_ENV_VAR}={str(a_file)!r}: not a directory")):
        datasets.locate(API.name)
