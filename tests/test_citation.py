"""CITATION.cff is a Citation File Format 1.2.0 file that agrees with pyproject, the dataset registry and the
README's "Citing a figure" section.

(``cffconvert`` would validate against the official schema, but it pins jsonschema < 4, which the lock's
jupyter stack cannot take; the keys and types the 1.2.0 schema requires are checked here instead.)
"""
from __future__ import annotations

import re
import tomllib

import yaml

from analysis import datasets, paths

CFF = paths.ROOT / "CITATION.cff"


def _cff() -> dict:
    doc = yaml.safe_load(CFF.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), "CITATION.cff: not a YAML mapping"
    return doc


def _check_authors(authors, where: str) -> None:
    assert isinstance(authors, list) and authors, f"{where}: authors must be a non-empty list"
    for author in authors:
        assert isinstance(author, dict), f"{where}: an author is not a mapping: {author!r}"
        person = isinstance(author.get("family-names"), str) and author["family-names"].strip()
        entity = isinstance(author.get("name"), str) and author["name"].strip()
        assert person or entity, f"{where}: author {author!r} has neither family-names nor name"


def test_required_keys_and_types_of_cff_1_2_0():
    doc = _cff()
    for key in ("cff-version", "message", "title", "authors"):  # the schema's required keys
        assert key in doc, f"CITATION.cff: required key {key!r} missing"
    assert doc["cff-version"] == "1.2.0"
    assert isinstance(doc["message"], str) and doc["message"].strip()
    assert isinstance(doc["title"], str) and doc["title"].strip()
    _check_authors(doc["authors"], "CITATION.cff")
    assert doc.get("type", "software") in ("software", "dataset")
    for n, ref in enumerate(doc.get("references", [])):
        where = f"CITATION.cff references[{n}]"
        assert isinstance(ref.get("title"), str) and isinstance(ref.get("type"), str), where
        _check_authors(ref.get("authors"), where)
        if "doi" in ref:
            assert re.fullmatch(r"10\.\d{4,9}/\S+", str(ref["doi"])), f"{where}: bad doi {ref['doi']!r}"


def test_version_and_license_match_pyproject():
    doc = _cff()
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    assert str(doc["version"]) == project["version"]
    assert doc["license"] == project["license"]["text"]


def test_references_match_the_dataset_registry():
    refs = _cff()["references"]
    urls = {r["url"] for r in refs if "url" in r}
    dois = {str(r["doi"]) for r in refs if "doi" in r}
    for citation in (datasets.MSFT_CITATION, datasets.NAB_CITATION):
        cited = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", citation))
        assert cited <= urls, f"dataset addresses {cited - urls} missing from CITATION.cff"
    assert set(re.findall(r"doi\.org/(10\.\S+)", datasets.NAB_CITATION)) <= dois


def test_readme_says_how_to_cite_a_figure_by_key_and_commit():
    readme = (paths.ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Citing a figure\n(.*?)(?=^## )", readme, re.S | re.M)
    assert match, "README.md has no 'Citing a figure' section"
    section = match.group(1)
    for needle in ("figures/index.json", "`cite`", "`git_commit`", "CITATION.cff", "@"):
        assert needle in section, f"'Citing a figure' does not mention {needle}"
    assert "figures/index.json" in _cff()["message"]
