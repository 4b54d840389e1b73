"""The catalogue of public datasets, read by the command line.

Each entry maps a short name to the module and class that load the dataset;
the facts (species, area, size, access, citation) live on the class as its
:class:`~deepstrf.datasets._source.DatasetInfo`, so they are written once.
"""

from __future__ import annotations

import importlib

from deepstrf.cite import Reference
from deepstrf.datasets._source import DatasetInfo, SourceDataset

__all__ = ["DATASETS", "REFERENCES", "get_dataset", "list_datasets"]

#: short name -> "module:Class"
DATASETS: dict[str, str] = {
    "aa1": "deepstrf.datasets.audio.crcns_aa1:CRCNSAA1Dataset",
    "aa2": "deepstrf.datasets.audio.crcns_aa2:CRCNSAA2Dataset",
    "aa4": "deepstrf.datasets.audio.crcns_aa4:CRCNSAA4Dataset",
    "le2025": "deepstrf.datasets.audio.le_2025:Le2025Dataset",
    "nat4": "deepstrf.datasets.audio.nat4:NAT4Dataset",
    "espejo": "deepstrf.datasets.audio.espejo:EspejoDataset",
    "ns1": "deepstrf.datasets.audio.ns1:NS1Dataset",
    "wingert2026": "deepstrf.datasets.audio.wingert2026:Wingert2026Dataset",
    "alice_eeg": "deepstrf.datasets.audio.alice_eeg:AliceEEGDataset",
    "ac1": "deepstrf.datasets.audio.crcns_ac1:CRCNSAC1Dataset",
    "downer2025": "deepstrf.datasets.audio.downer2025:Downer2025Dataset",
}


_CRCNS = "CRCNS.org"

#: short name -> BibTeX facts: the dataset's own record first, then its papers
#: (``Dataset.cite()`` and ``deepstrf info NAME --bibtex`` render them).
REFERENCES: dict[str, tuple[Reference, ...]] = {
    "aa1": (
        Reference("theunissen2009crcnsaa1", "misc",
                  ("Theunissen, F. E.", "Hauber, M. E.", "Woolley, S. M. N.", "Gill, P.",
                   "Shaevitz, S. S.", "Amin, N.", "Hsu, A.", "Singh, N. C.", "Grace, G. E.",
                   "Fremouw, T.", "Zhang, J.", "Cassey, P.", "Doupe, A. J.", "David, S. V."),
                  "Single-unit recordings from multiple auditory areas in male zebra finches",
                  2009, "10.6080/K0F769GP", publisher=_CRCNS,
                  url="https://crcns.org/data-sets/aa/aa-1"),
        Reference("woolley2005tuning", "article",
                  ("Woolley, S. M. N.", "Fremouw, T. E.", "Hsu, A.", "Theunissen, F. E."),
                  "Tuning for spectro-temporal modulations as a mechanism for auditory "
                  "discrimination of natural sounds", 2005, "10.1038/nn1536",
                  journal="Nature Neuroscience", volume="8", pages="1371"),
        Reference("hsu2004modulation", "article",
                  ("Hsu, A.", "Woolley, S. M. N.", "Fremouw, T. E.", "Theunissen, F. E."),
                  "Modulation power and phase spectrum of natural sounds enhance neural "
                  "encoding performed by single auditory neurons", 2004,
                  "10.1523/JNEUROSCI.2449-04.2004", journal="Journal of Neuroscience",
                  volume="24", pages="9201"),
    ),
    "aa2": (
        Reference("theunissen2011crcnsaa2", "misc",
                  ("Theunissen, F. E.", "Gill, P.", "Amin, N.", "Zhang, J.",
                   "Woolley, S. M. N.", "Fremouw, T. E."),
                  "Single-unit recordings from the auditory areas of male zebra finches",
                  2011, "10.6080/K0JW8BSC", publisher=_CRCNS,
                  url="https://crcns.org/data-sets/aa/aa-2"),
        Reference("gill2006sound", "article",
                  ("Gill, P.", "Zhang, J.", "Woolley, S. M. N.", "Fremouw, T.",
                   "Theunissen, F. E."),
                  "Sound representation methods for spectro-temporal receptive field "
                  "estimation", 2006, "10.1007/s10827-006-7059-4",
                  journal="Journal of Computational Neuroscience", volume="21", pages="5--20"),
        Reference("amin2010role", "article", ("Amin, N.", "Gill, P.", "Theunissen, F. E."),
                  "Role of the zebra finch auditory thalamus in generating complex "
                  "representations for natural sounds", 2010, "10.1152/jn.00128.2010",
                  journal="Journal of Neurophysiology", volume="104", pages="784--798"),
    ),
    "aa4": (
        Reference("elie2019crcnsaa4", "misc", ("Elie, J. E.", "Theunissen, F. E."),
                  "Single-unit recordings from the zebra finch auditory forebrain to the "
                  "vocal repertoire", 2019, "10.6080/K00C4T06", publisher=_CRCNS,
                  url="https://crcns.org/data-sets/aa/aa-4"),
        Reference("elie2015meaning", "article", ("Elie, J. E.", "Theunissen, F. E."),
                  "Meaning in the avian auditory cortex: neural representation of "
                  "communication calls", 2015, "10.1111/ejn.12812",
                  journal="European Journal of Neuroscience", volume="41", pages="546--567"),
        Reference("elie2019invariant", "article", ("Elie, J. E.", "Theunissen, F. E."),
                  "Invariant neural responses for sensory categories revealed by the "
                  "time-varying information for communication calls", 2019,
                  "10.1371/journal.pcbi.1006698", journal="PLoS Computational Biology",
                  volume="15", pages="e1006698"),
    ),
    # NS1 has no data DOI of its own: the OSF files were released with the 2016 paper,
    # so that paper is the dataset's record.
    "ns1": (
        Reference("harper2016network", "article",
                  ("Harper, N. S.", "Schoppe, O.", "Willmore, B. D. B.", "Cui, Z.",
                   "Schnupp, J. W. H.", "King, A. J."),
                  "Network receptive field modeling reveals extensive integration and "
                  "multi-feature selectivity in auditory cortical neurons", 2016,
                  "10.1371/journal.pcbi.1005113", journal="PLoS Computational Biology",
                  volume="12", pages="e1005113", url="https://osf.io/ayw2p/"),
        Reference("rahman2019dynamic", "article",
                  ("Rahman, M.", "Willmore, B. D. B.", "King, A. J.", "Harper, N. S."),
                  "A dynamic network model of temporal receptive fields in primary auditory "
                  "cortex", 2019, "10.1371/journal.pcbi.1006618",
                  journal="PLoS Computational Biology", volume="15", pages="e1006618"),
        Reference("rahman2020simple", "article",
                  ("Rahman, M.", "Willmore, B. D. B.", "King, A. J.", "Harper, N. S."),
                  "Simple transformations capture auditory input to cortex", 2020,
                  "10.1073/pnas.1922033117", journal="Proceedings of the National Academy of "
                  "Sciences", volume="117", pages="28442--28451"),
    ),
    "le2025": (
        Reference("le2025figshare", "misc", ("Le, M.", "Bjoring, M. C.", "Meliza, C. D."),
                  "Data for Le, Bjoring and Meliza (2025), The zebra finch auditory cortex "
                  "reconstructs occluded syllables in conspecific song", 2025,
                  "10.6084/m9.figshare.29203457", publisher="figshare",
                  url="https://figshare.com/articles/29203457"),
        Reference("le2025zebra", "article", ("Le, M.", "Bjoring, M. C.", "Meliza, C. D."),
                  "The zebra finch auditory cortex reconstructs occluded syllables in "
                  "conspecific song", 2025, "10.1038/s41467-025-63182-y",
                  journal="Nature Communications", volume="16", pages="8452"),
    ),
    "nat4": (
        Reference("pennington2023zenodo", "misc", ("Pennington, J. R.", "David, S. V."),
                  "Data for Pennington and David (2023), A convolutional neural network "
                  "provides a generalizable model of natural sound coding by neural "
                  "populations in auditory cortex", 2023, "10.5281/zenodo.8044773",
                  publisher="Zenodo", url="https://zenodo.org/records/8044773"),
        Reference("pennington2023convolutional", "article", ("Pennington, J. R.", "David, S. V."),
                  "A convolutional neural network provides a generalizable model of natural "
                  "sound coding by neural populations in auditory cortex", 2023,
                  "10.1371/journal.pcbi.1011110", journal="PLoS Computational Biology",
                  volume="19", pages="e1011110"),
    ),
    "espejo": (
        Reference("lopezespejo2019zenodo", "misc",
                  ("Lopez Espejo, M.", "Schwartz, Z. P.", "David, S. V."),
                  "Data for Lopez Espejo, Schwartz and David (2019), Spectral tuning of "
                  "adaptation supports coding of sensory context in auditory cortex", 2019,
                  "10.5281/zenodo.3445557", publisher="Zenodo",
                  url="https://zenodo.org/records/3445557"),
        Reference("lopezespejo2019spectral", "article",
                  ("Lopez Espejo, M.", "Schwartz, Z. P.", "David, S. V."),
                  "Spectral tuning of adaptation supports coding of sensory context in auditory "
                  "cortex", 2019, "10.1371/journal.pcbi.1007430",
                  journal="PLoS Computational Biology", volume="15", pages="e1007430"),
    ),
    # the Zenodo record's and the paper's exact titles are not in our sources: the record
    # carries the catalogue title, and the paper is cited by its DOI in the record's note
    "wingert2026": (
        Reference("wingert2026zenodo", "misc",
                  ("Wingert, J. C.", "Parida, S.", "Norman-Haignere, S.", "David, S. V."),
                  "Wingert 2026: ferret auditory cortex units to natural sound sequences",
                  2026, "10.5281/zenodo.18331549", publisher="Zenodo",
                  url="https://zenodo.org/records/18331549",
                  extra={"note": "Data of Wingert, Parida, Norman-Haignere & David (2026), "
                                 "Nature Neuroscience, doi:10.1038/s41593-026-02216-0"}),
    ),
    "downer2025": (
        Reference("ahmed2025zenodo", "misc", ("Ahmed, B.", "Downer, J. D.", "Malone, B. J.",
                                              "Makin, J. G."),
                  "Multi-channel auditory cortex electrophysiology in squirrel monkey", 2025,
                  "10.5281/zenodo.16175377", publisher="Zenodo",
                  url="https://zenodo.org/records/16175377"),
        Reference("ahmed2025deep", "article", ("Ahmed, B.", "Downer, J. D.", "Malone, B. J.",
                                               "Makin, J. G."),
                  "Deep neural networks explain spiking activity in auditory cortex", 2025,
                  "10.1371/journal.pcbi.1013334", journal="PLoS Computational Biology",
                  volume="21", pages="e1013334"),
        Reference("downer2021temporally", "article",
                  ("Downer, J. D.", "Bigelow, J.", "Runfeldt, M. J.", "Malone, B. J."),
                  "Temporally precise population coding of dynamic sounds by auditory cortex",
                  2021, "10.1152/jn.00709.2020", journal="Journal of Neurophysiology"),
    ),
    # the DRUM record's full author list is not in our sources: "and others" (BibTeX's own form)
    "alice_eeg": (
        Reference("brodbeck2023alicedrum", "misc", ("Brodbeck, C.", "others"),
                  "Alice EEG: human scalp EEG to Alice in Wonderland, chapter 1 (restructured "
                  "release of the Brennan and Hale recordings)", 2023, "10.13016/pulf-lndn",
                  publisher="University of Maryland, DRUM",
                  url="https://drum.lib.umd.edu/handle/1903/27591"),
        Reference("bhattasali2020alice", "inproceedings",
                  ("Bhattasali, S.", "Brennan, J.", "Luh, W.-M.", "Franzluebbers, B.",
                   "Hale, J."),
                  "The Alice Datasets: fMRI and EEG observations of natural language "
                  "comprehension", 2020, "", journal="Proceedings of the 12th Language "
                  "Resources and Evaluation Conference (LREC 2020)", pages="120--125"),
        Reference("brennan2019hierarchical", "article",
                  ("Brennan, J. R.", "Hale, J. T."),
                  "Hierarchical structure guides rapid linguistic predictions during "
                  "naturalistic listening", 2019, "10.1371/journal.pone.0207741",
                  journal="PLoS ONE", volume="14", pages="e0207741"),
        Reference("brodbeck2023eelbrain", "article",
                  ("Brodbeck, C.", "Das, P.", "Gillis, M.", "Kulasingham, J. P.",
                   "Bhattasali, S.", "Gaston, P.", "Resnik, P.", "Simon, J. Z."),
                  "Eelbrain, a Python toolkit for time-continuous analysis with temporal "
                  "response functions", 2023, "10.7554/eLife.85012", journal="eLife",
                  volume="12", pages="e85012"),
    ),
    "ac1": (
        Reference("asari2009crcnsac1", "misc",
                  ("Asari, H.", "Wehr, M.", "Machens, C. K.", "Zador, A. M."),
                  "Auditory cortex and thalamic neuronal responses to various natural and "
                  "synthetic sounds", 2009, "10.6080/K0KW5CXR", publisher=_CRCNS,
                  url="https://crcns.org/data-sets/ac/ac-1"),
        Reference("machens2004linearity", "article",
                  ("Machens, C. K.", "Wehr, M. S.", "Zador, A. M."),
                  "Linearity of cortical receptive fields measured with natural sounds", 2004,
                  "10.1523/JNEUROSCI.4445-03.2004", journal="Journal of Neuroscience",
                  volume="24", pages="1089--1100"),
        Reference("asari2009longlasting", "article", ("Asari, H.", "Zador, A. M."),
                  "Long-lasting context dependence constrains neural encoding models in "
                  "rodent auditory cortex", 2009, "10.1152/jn.00577.2009",
                  journal="Journal of Neurophysiology", volume="102", pages="2638--2656"),
    ),
}


def get_dataset(name: str) -> type[SourceDataset]:
    """The dataset class registered under ``name`` (case-insensitive; class names work too).

    Raises
    ------
    KeyError
        For an unknown name; the message lists the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string; got {type(name).__name__}.")
    wanted = name.strip().lower()
    for short, target in DATASETS.items():
        if wanted in (short, target.rsplit(":", 1)[1].lower()):
            module, cls = target.split(":")
            return getattr(importlib.import_module(module), cls)
    known = ", ".join(sorted(DATASETS))
    raise KeyError(f"unknown dataset {name!r}; known datasets: {known}. "
                   "`deepstrf list` shows them with their facts.")


def list_datasets() -> list[DatasetInfo]:
    """Facts about every registered dataset, in catalogue order."""
    return [get_dataset(name).info for name in DATASETS]
