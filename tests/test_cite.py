"""BibTeX for the datasets and their papers: ds.cite() and `deepstrf info NAME --bibtex`."""

from __future__ import annotations

import pytest

from deepstrf.cite import Reference, _fallback, dataset_bibtex
from deepstrf.cli import main
from deepstrf.datasets.registry import DATASETS, REFERENCES, get_dataset

pybtex = pytest.importorskip("pybtex.database")

EXPECTED = {
    "aa1": {"theunissen2009crcnsaa1": ("misc", "10.6080/K0F769GP", "2009"),
            "woolley2005tuning": ("article", "10.1038/nn1536", "2005"),
            "hsu2004modulation": ("article", "10.1523/JNEUROSCI.2449-04.2004", "2004")},
    "aa2": {"theunissen2011crcnsaa2": ("misc", "10.6080/K0JW8BSC", "2011"),
            "gill2006sound": ("article", "10.1007/s10827-006-7059-4", "2006"),
            "amin2010role": ("article", "10.1152/jn.00128.2010", "2010")},
    "aa4": {"elie2019crcnsaa4": ("misc", "10.6080/K00C4T06", "2019"),
            "elie2015meaning": ("article", "10.1111/ejn.12812", "2015"),
            "elie2019invariant": ("article", "10.1371/journal.pcbi.1006698", "2019")},
}


def _parse(text: str):
    return pybtex.parse_string(text, "bibtex")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cite_parses_with_the_right_keys_and_dois(name):
    cls = get_dataset(name)
    entries = _parse(cls.cite()).entries
    assert list(entries) == list(EXPECTED[name])  # the dataset first, then its papers
    for key, (kind, doi, year) in EXPECTED[name].items():
        entry = entries[key]
        assert entry.type == kind and entry.fields["doi"] == doi
        assert entry.fields["year"] == year and entry.persons["author"]
    dataset_entry = entries[next(iter(EXPECTED[name]))]
    assert dataset_entry.fields["doi"] == cls.info.doi
    assert dataset_entry.fields["publisher"] == "CRCNS.org"
    assert dataset_entry.fields["url"] == cls.info.url
    # every paper's DOI is the one the module's docstring cites
    for key, (_, doi, _) in EXPECTED[name].items():
        assert doi in cls.__doc__, (key, doi)


def test_authors_and_fields_of_one_paper():
    entries = _parse(get_dataset("aa2").cite()).entries
    gill = entries["gill2006sound"]
    assert [str(p) for p in gill.persons["author"]] == [
        "Gill, P.", "Zhang, J.", "Woolley, S. M. N.", "Fremouw, T.", "Theunissen, F. E."]
    assert gill.fields["journal"] == "Journal of Computational Neuroscience"
    assert (gill.fields["volume"], gill.fields["pages"]) == ("21", "5--20")
    assert gill.fields["title"] == ("{Sound representation methods for spectro-temporal "
                                    "receptive field estimation}")
    aa1 = _parse(get_dataset("aa1").cite()).entries["theunissen2009crcnsaa1"]
    assert len(aa1.persons["author"]) == 14 and str(aa1.persons["author"][-1]) == "David, S. V."


def test_instance_name_and_class_give_the_same_text():
    cls = get_dataset("aa4")
    assert dataset_bibtex("aa4") == dataset_bibtex(cls) == cls.cite()
    ds = cls.__new__(cls)  # an instance without loading anything
    assert ds.cite() == cls.cite()
    with pytest.raises(TypeError, match="dataset class, instance or name"):
        dataset_bibtex(42)


def test_every_registered_dataset_has_references_matching_its_facts():
    for name in DATASETS:
        refs = REFERENCES[name]
        # the release's own record first: a data DOI (misc), or the paper it came out with
        # when the release has none (NS1)
        assert refs[0].doi == get_dataset(name).info.doi
        assert refs[0].entry_type == ("article" if name == "ns1" else "misc")
        assert len(refs) == 1 + len(get_dataset(name).info.papers)


def test_cli_info_bibtex(capsys):
    assert main(["info", "aa1", "--bibtex"]) == 0
    out = capsys.readouterr().out
    assert out == get_dataset("aa1").cite()
    assert list(_parse(out).entries) == list(EXPECTED["aa1"])


def test_fallback_from_the_catalogue_facts_alone():
    """A dataset without REFERENCES still gets a valid entry from its DatasetInfo."""
    info = get_dataset("aa2").info
    entry = _parse(_fallback(info).to_bibtex()).entries["aa2"]
    assert entry.type == "misc" and entry.fields["doi"] == "10.6080/K0JW8BSC"
    assert entry.fields["year"] == "2011"
    assert [str(p) for p in entry.persons["author"]][:2] == ["Theunissen, F.E.", "Gill, P."]
    assert len(entry.persons["author"]) == 6
    assert r"\&" in entry.fields["note"]  # escaped, so the file stays valid LaTeX


@pytest.mark.parametrize("kwargs, match", [
    ({"key": "1bad"}, "key must start with a letter"),
    ({"entry_type": "book"}, "entry_type"),
    ({"doi": "doi:10.1/x"}, "doi must look like"),
    ({"authors": ()}, "authors must be"),
    ({"journal": None}, "needs its journal"),
])
def test_reference_rejects_bad_facts(kwargs, match):
    facts = {"key": "a2020b", "entry_type": "article", "authors": ("A, B.",), "title": "T",
             "year": 2020, "doi": "10.1234/x", "journal": "J"}
    with pytest.raises(ValueError, match=match):
        Reference(**{**facts, **kwargs})
