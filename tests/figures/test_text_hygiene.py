"""Every text a biologist reads on a figure is a sentence, not a slip.

Builds every panel of every page for views that reach the edge cases (one response
group, no CD8 cells, on-treatment NK, a landmark, a gate no cell passes) and checks
titles, captions, annotations, axis titles and legend names for the slips issue 12
found: a doubled full stop ("needed).."), "a on-treatment", and numbers that are not
numbers ("nan", "None", "inf").
"""

from __future__ import annotations

import re

import pytest

from data.view import cohort_view
from figures.reports import build_panels
from tests.conftest import DATA_DIR

SLIPS = {
    "doubled full stop": re.compile(r"(?<!\.)\.\.(?!\.)"),
    "'a' before a vowel sound": re.compile(r"\ba (on|on-treatment|post)\b", re.I),
    "not a number": re.compile(r"\b(nan|NaN|None|inf)\b"),
}

VIEWS = {
    "all": {},
    "melanoma": {"tumor_type": ["melanoma"]},
    "responders only": {"response": ["CR", "PR"]},
    "on-treatment samples": {"timepoint": ["on"]},
    "one small cohort": {"cohort": ["SYN-C"], "tumor_type": ["RCC"]},
}

STATES = {
    "overview": [{}, {"metric": "log2_nk_cd8", "definition": "benefit"}],
    "nk-response": [
        {},
        {"nk_timepoint": "on"},
        {"nk_timepoint": "on", "landmark": "3"},
        {"split": "tertile", "definition": "recist"},
    ],
    "cd8-states": [
        {},
        {"gate": "CD69.gt.99", "color": "gate"},
        {"gate": "CD69.gt.0~GZMB.gt.1", "metric": "frac_nk"},
    ],
}


def _texts(panel) -> list[str]:
    texts = [panel.title, panel.caption]
    layout = panel.figure.layout
    if layout.title and layout.title.text:
        texts.append(layout.title.text)
    texts += [a.text for a in layout.annotations or () if a.text]
    for name in dir(layout):
        if name.startswith(("xaxis", "yaxis")):
            axis = getattr(layout, name, None)
            if axis is not None and axis.title and axis.title.text:
                texts.append(axis.title.text)
    texts += [t.name for t in panel.figure.data if getattr(t, "name", None)]
    return [t for t in texts if t]


@pytest.mark.parametrize("view_name", list(VIEWS))
def test_every_figure_text_reads_as_a_sentence(demo_dir, view_name):
    view = cohort_view(
        {"dataset": "demo", **VIEWS[view_name]},
        data_dir=DATA_DIR,
        default_dataset="demo",
    )
    found = []
    for page, states in STATES.items():
        for state in states:
            for panel in build_panels(page, view, state):
                for text in _texts(panel):
                    for slip, pattern in SLIPS.items():
                        if match := pattern.search(text):
                            where = f"{page} {state} {panel.key}"
                            found.append(f"{where}: {slip} at {match.group(0)!r}")
                            found.append(f"    in: {text[:300]!r}")
    assert not found, "\n".join(found)


def test_a_long_empty_state_message_is_wrapped_not_cut():
    from figures.template import empty_figure

    message = (
        "0 cells pass the gate: no statistics (CD69 threshold 99 is outside the "
        "observed CD69 range in the filtered cells (0.00 to 4.29))"
    )
    text = empty_figure(message).layout.annotations[0].text
    lines = text.split("<br>")
    assert len(lines) > 1 and max(len(line) for line in lines) <= 55
    assert " ".join(lines) == message  # nothing lost
    assert empty_figure("a<br>b").layout.annotations[0].text == "a<br>b"
