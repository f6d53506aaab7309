"""Page state of the CD8 page: every URL value either honoured or listed as a
fallback in the reader's words (labels, not keys); never a silent replacement."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.response import DEFINITIONS, available_definitions
from figures import cd8


@pytest.fixture(scope="module")
def samples(demo_bundle):
    return demo_bundle.cohort


GENES = pd.Index(["CD69", "BCL2", "EOMES", "GZMB", "HAVCR2", "TNFRSF18", "TOX"])


def test_valid_values_are_kept_without_fallbacks(samples):
    state = {
        "color": "nk_level",
        "gene": "TOX",
        "gate": "CD69.gt.0.5~TOX.le.1",
        "gate_name": "mine",
        "accept_missing": "1",
        "metric": "nk_over_nk_cd8",
        "definition": "benefit",
        "highlight": "SYN-A|P012",
    }
    page = cd8.parse_state(state, samples=samples, genes=GENES)
    assert page.fallbacks == ()
    assert page.to_dict() == state


@pytest.mark.parametrize(
    ("key", "value", "label", "shown"),
    [
        ("color", "purple", "Colour cells by", "Differentiation state"),
        ("gene", "NOTAGENE", "Gene", "GZMB"),
        ("metric", "foo", "NK metric", "NK among lymphocytes"),
        ("definition", "nope", "Response definition", "Objective response"),
        ("accept_missing", "maybe", "Evaluate the gate without missing", "off"),
        ("gate", "%%%", "Phenotype gate", "the published gate (CD69+ BCL2+"),
        ("gate", "NOTAGENE.gt.0~CD69.gt.0", "Phenotype gate", "NOTAGENE marked"),
    ],
)
def test_unknown_values_fall_back_and_say_so(samples, key, value, label, shown):
    page = cd8.parse_state({key: value}, samples=samples, genes=GENES)
    assert len(page.fallbacks) == 1, page.fallbacks
    fallback = page.fallbacks[0]
    assert fallback.key == key
    assert fallback.label.startswith(label)
    assert shown in fallback.shown
    # the page shows the fallback: the state written back to the URL is what is shown
    if key == "metric":
        assert page.metric == "nk_lymphocytes"
    if key == "definition":
        assert page.definition == "objective"
    if key == "gate" and value.startswith("NOTAGENE"):
        assert page.to_dict()["gate"] == value  # kept, marked missing, not evaluated


def test_a_definition_the_patients_lack_falls_back(samples):
    no_recist = samples.assign(recist="")
    assert "recist" not in available_definitions(no_recist)
    page = cd8.parse_state({"definition": "recist"}, samples=no_recist, genes=GENES)
    assert page.definition != "recist"
    (fallback,) = page.fallbacks
    assert fallback.shown == DEFINITIONS[page.definition].label


def test_highlight_must_be_a_patient_of_the_view():
    patients = pd.DataFrame({"key": ["A|P1", "B|P2"]})
    page = cd8.PageState(highlight="A|P1")
    assert cd8.check_highlight(page, patients) == ("A|P1", None)
    shown, fallback = cd8.check_highlight(cd8.PageState(highlight="Z|nobody"), patients)
    assert shown == ""
    assert fallback.label == "Highlighted patient" and fallback.value == "Z|nobody"


def test_link_values_match_ignoring_case(samples):
    asked = {
        "color": "Gene",
        "gene": "gzmb",
        "metric": "NK_over_NK_CD8",
        "definition": "Benefit",
    }
    page = cd8.parse_state(asked, samples=samples, genes=GENES)
    assert page.fallbacks == ()
    assert (page.color, page.gene, page.metric, page.definition) == (
        "gene",
        "GZMB",
        "nk_over_nk_cd8",
        "benefit",
    )


def test_the_published_name_on_a_modified_gate_is_reported(samples):
    asked = {"gate": "CD69.gt.1", "gate_name": "Song et al. CD8 state"}
    page = cd8.parse_state(asked, samples=samples, genes=GENES)
    (fallback,) = page.fallbacks
    assert fallback.label == "Gate name"
    assert fallback.shown == "custom (modified from Song et al.)"
    assert page.to_dict()["gate_name"] == ""
    # on the published gate the name is simply what is shown: nothing to report
    published = cd8.parse_state(
        {"gate_name": "Song et al. CD8 state"}, samples=samples, genes=GENES
    )
    assert published.fallbacks == ()


def test_gate_genes_in_a_link_match_ignoring_case(samples):
    page = cd8.parse_state(
        {"gate": "cd69.gt.0~Bcl2.gt.0~EOMES.gt.0~gzmb.gt.0~havcr2.le.0~TNFRSF18.le.0"},
        samples=samples,
        genes=GENES,
    )
    assert page.fallbacks == ()
    assert [m.gene for m in page.gate.markers] == [
        "CD69", "BCL2", "EOMES", "GZMB", "HAVCR2", "TNFRSF18"
    ]  # fmt: skip
    # spelled as the dataset does, it is the published gate again
    assert page.gate.display_name == "Song et al. CD8 state"
    # a gene the dataset lacks is kept and reported, not dropped
    lacking = cd8.parse_state({"gate": "cd69.gt.0~nosuch.gt.0"}, samples=samples,
                              genes=GENES)  # fmt: skip
    assert [m.gene for m in lacking.gate.markers] == ["CD69", "nosuch"]
    assert [f.key for f in lacking.fallbacks] == ["gate"]
    # two spellings of one gene are one gene twice: the link cannot be read
    twice = cd8.parse_state({"gate": "CD69.gt.0~cd69.gt.1"}, samples=samples,
                            genes=GENES)  # fmt: skip
    assert twice.gate.display_name == "Song et al. CD8 state"
    assert "appears twice" in twice.fallbacks[0].reason
