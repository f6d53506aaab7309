"""Treatment names -> checkpoint classes of :data:`data.schema.TREATMENTS`.

A cell may name a drug (``Pembrolizumab``), a target (``anti-PD-1``), a pooled class
as published tables use it (``PD-1/PD-L1``, ``PD-(L)1``, ``ICI``, ``IO+combo``) or a
combination (``Ipilimumab + Nivolumab``, ``Atezolizumab + Bevacizumab``). ``+``,
``&``, ``and``, ``with``, ``,``, ``;`` and ``:`` join drugs given together; ``/`` and
``or`` join alternatives of a pooled label (``PD-1/PD-L1`` = anti-PD-1 or anti-PD-L1).
The whole vocabulary is listed in the README ("Use your own data").
"""

from __future__ import annotations

import re

from data import schema

PD1, PDL1, PDL1_POOLED, CTLA4 = "PD-1", "PD-L1", "PD-(L)1", "CTLA-4"
ICB, AGENT = "ICB", "other agent"

# Lower-case, spaces, hyphens, underscores and dots removed.
_PD1 = [
    "pembrolizumab",
    "pembro",
    "nivo",
    "keytruda",
    "lambrolizumab",
    "mk3475",
    "nivolumab",
    "opdivo",
    "bms936558",
    "ono4538",
    "cemiplimab",
    "libtayo",
    "dostarlimab",
    "jemperli",
    "toripalimab",
    "tislelizumab",
    "sintilimab",
    "camrelizumab",
    "spartalizumab",
    "retifanlimab",
    "prolgolimab",
    "serplulimab",
    "penpulimab",
    "zimberelimab",
    "balstilimab",
    "cetrelimab",
    "sasanlimab",
    "pidilizumab",
    "pd1",
    "pd1inhibitor",
    "pd1antibody",
    "pd1blockade",
]
_PDL1 = [
    "atezolizumab",
    "atezo",
    "durva",
    "tecentriq",
    "mpdl3280a",
    "durvalumab",
    "imfinzi",
    "medi4736",
    "avelumab",
    "bavencio",
    "envafolimab",
    "sugemalimab",
    "adebrelimab",
    "cosibelimab",
    "pdl1",
    "pdl1inhibitor",
    "pdl1antibody",
    "pdl1blockade",
]
_CTLA4 = [
    "ipilimumab",
    "ipi",
    "treme",
    "yervoy",
    "tremelimumab",
    "imjudo",
    "quavonlimab",
    "botensilimab",
    "zalifrelimab",
    "ctla4",
    "ctla4inhibitor",
    "ctla4antibody",
    "ctla4blockade",
]
#: Checkpoint inhibitors whose target is not named.
_ICB = [
    "ici",
    "icis",
    "icb",
    "io",
    "immunotherapy",
    "checkpointinhibitor",
    "checkpointinhibitors",
    "immunecheckpointinhibitor",
    "immunecheckpointinhibitors",
    "checkpointblockade",
    "immunecheckpointblockade",
]
#: Drugs and treatments given with a checkpoint inhibitor in published cohorts
#: (chemotherapy, anti-angiogenics, kinase inhibitors, other immunotherapies).
_AGENTS = [
    "combo",
    "combination",
    "chemo",
    "chemotherapy",
    "platinum",
    "carboplatin",
    "cisplatin",
    "oxaliplatin",
    "pemetrexed",
    "paclitaxel",
    "nabpaclitaxel",
    "docetaxel",
    "gemcitabine",
    "etoposide",
    "fluorouracil",
    "5fu",
    "capecitabine",
    "bevacizumab",
    "avastin",
    "ramucirumab",
    "axitinib",
    "lenvatinib",
    "cabozantinib",
    "sunitinib",
    "sorafenib",
    "pazopanib",
    "dabrafenib",
    "trametinib",
    "vemurafenib",
    "cobimetinib",
    "encorafenib",
    "binimetinib",
    "relatlimab",
    "opdualag",
    "epacadostat",
    "entinostat",
    "radiotherapy",
    "rt",
    "sbrt",
    "radiation",
    "vaccine",
    "tvec",
    "talimogenelaherparepvec",
    "aldesleukin",
    "il2",
    "interferon",
    "ifn",
    "ifnalpha",
    "tiragolumab",
    "domvanalimab",
    "ociperlimab",
    "targetedtherapy",
    "tki",
]
TOKENS: dict[str, str] = (
    {t: PD1 for t in _PD1}
    | {t: PDL1 for t in _PDL1}
    | {t: CTLA4 for t in _CTLA4}
    | {t: ICB for t in _ICB}
    | {t: AGENT for t in _AGENTS}
)
#: Pooled labels written as one token (after squashing, brackets kept).
POOLED = {
    "pd(l)1": PDL1_POOLED,
    "antipd(l)1": PDL1_POOLED,
    "pd1/l1": PDL1_POOLED,
    "antipd1/l1": PDL1_POOLED,
    "pd(l)1inhibitor": PDL1_POOLED,
}

_CLASSES = {
    frozenset({PD1}): "anti-PD-1",
    frozenset({PDL1}): "anti-PD-L1",
    frozenset({PDL1_POOLED}): "anti-PD-(L)1",
    frozenset({PD1, PDL1}): "anti-PD-(L)1",
    frozenset({CTLA4}): "anti-CTLA-4",
    frozenset({PD1, CTLA4}): "anti-PD-1 + anti-CTLA-4",
    frozenset({PDL1, CTLA4}): "anti-PD-L1 + anti-CTLA-4",
    frozenset({PDL1_POOLED, CTLA4}): "anti-PD-(L)1 + anti-CTLA-4",
    frozenset({PD1, PDL1, CTLA4}): "anti-PD-(L)1 + anti-CTLA-4",
    frozenset({ICB}): "ICB, unspecified",
}
_COMBINE = re.compile(r"\s*(?:\+|&|,|;|:|\band\b|\bwith\b|\bplus\b)\s*")
_ALTERNATIVE = re.compile(r"\s*(?:/|\bor\b)\s*")


def squash(value: object) -> str:
    """Lower-case, with spaces, hyphens, underscores and dots removed."""
    return re.sub(r"[\s\-_.]", "", str(value).strip().lower())


def _token_target(token: str) -> str | None:
    key = squash(token)
    if key in POOLED:
        return POOLED[key]
    key = re.sub(r"\([^)]*\)", "", key)  # brand names in brackets add nothing
    for candidate in (key, key.removeprefix("anti")):
        if candidate in TOKENS:
            return TOKENS[candidate]
    for suffix in ("inhibitor", "inhibitors", "antibody", "mab", "therapy"):
        trimmed = key.removeprefix("anti").removesuffix(suffix)
        if trimmed != key and trimmed in TOKENS:
            return TOKENS[trimmed]
    return None


def classify_treatment(value: str) -> str | None:
    """The checkpoint class of one treatment cell, or ``None`` if unknown.

    Examples: ``Pembrolizumab`` -> ``anti-PD-1``; ``PD-1/PD-L1`` and ``PD-(L)1`` ->
    ``anti-PD-(L)1``; ``ICI``/``IO`` -> ``ICB, unspecified``; ``IO+combo`` and
    ``Atezolizumab + Bevacizumab`` -> ``ICB + other agent``; ``chemotherapy`` ->
    ``other``; ``CTLA-4 + PD-1`` -> ``anti-PD-1 + anti-CTLA-4``.
    """
    text = str(value).strip()
    key = squash(text)
    for known in schema.TREATMENTS:
        if key == squash(known):
            return known
    if key in POOLED:
        return "anti-PD-(L)1"
    tags: set[str] = set()
    for part in _COMBINE.split(text.lower()):
        if not squash(part):
            continue
        target = _token_target(part)
        if target is None:
            alternatives = [
                _token_target(a) for a in _ALTERNATIVE.split(part) if squash(a)
            ]
            if not alternatives or None in alternatives:
                return None
            found = set(alternatives)
            if found <= {PD1, PDL1, PDL1_POOLED}:
                target = PDL1_POOLED if len(found) > 1 else found.pop()
            elif len(found) == 1:
                target = found.pop()
            else:
                target = ICB  # e.g. "anti-PD-1/anti-CTLA-4": which one is unknown
        tags.add(target)
    if not tags:
        return None
    if AGENT in tags:
        return "ICB + other agent" if tags - {AGENT} else "other"
    if ICB in tags:
        return "ICB, unspecified"
    if PDL1_POOLED in tags:
        tags = (tags - {PD1, PDL1}) | {PDL1_POOLED}
    return _CLASSES.get(frozenset(tags), "ICB, unspecified")


def vocabulary_table() -> list[tuple[str, str]]:
    """(class, accepted names) rows for the README and the upload page."""
    return [
        ("anti-PD-1", ", ".join(_PD1)),
        ("anti-PD-L1", ", ".join(_PDL1)),
        ("anti-PD-(L)1", "PD-1/PD-L1, PD-(L)1, anti-PD-(L)1, PD-1/L1"),
        ("anti-CTLA-4", ", ".join(_CTLA4)),
        ("ICB, unspecified", ", ".join(_ICB)),
        ("ICB + other agent", "a checkpoint drug + " + ", ".join(_AGENTS)),
        ("other", "non-checkpoint drugs alone (" + ", ".join(_AGENTS[:6]) + ", ...)"),
    ]
