"""The mechanism page's state (URL keys) and its numbers, without figures or Dash.

One function, :func:`mechanism_result`, computes every number the page shows from a
:class:`data.view.CohortView` and the page state; the page, the exports and
``cli.py mechanism --json`` all print what it returns, so they agree to the digit.
Statistics are per patient: the mean program score over each patient's CD8 cells.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import chain, gating, programs
from analysis.nk_metrics import available_metrics
from analysis.stats import direction_sentence, mann_whitney, to_jsonable
from figures import cd8_state

PAGE_ID = "mechanism"
DEFAULT_PROGRAM = "ifna"
#: URL keys of the page and how a reader names each.
KEY_LABELS = {
    "metric": "NK metric",
    "definition": "Response definition",
    "program": "Program for the gene view",
    "gate": "Phenotype gate",
    "gate_name": "Gate name",
    "accept_missing": "Evaluate the gate without missing markers",
}
STATE_KEYS = tuple(KEY_LABELS)
#: Covariates for the partial correlations, first one with values wins.
CD8_COVARIATES = {
    "frac_cd8": "CD8 T cells, fraction of CD45+ cells",
    "score_CD8_signature": "CD8 signature score",
}
TOP_GENES = 20


@dataclass(frozen=True)
class MechanismState:
    """Parsed page state: the CD8 page's parser for metric, definition and gate,
    plus the program of the gene view. ``fallbacks`` as on the CD8 page."""

    cd8: cd8_state.PageState
    program: str
    fallbacks: tuple[cd8_state.Fallback, ...]

    def to_dict(self) -> dict[str, str]:
        full = self.cd8.to_dict()
        out = {k: full[k] for k in STATE_KEYS if k in full}
        out["program"] = self.program
        return out


def _first(value: object) -> str:
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def parse_state(
    state: Mapping[str, object] | None, *, samples: pd.DataFrame, genes
) -> MechanismState:
    """Read the page state; odd values fall back to defaults, each listed.

    The gate is evaluated without missing markers by default here (the chain needs a
    gate fraction on data sets lacking BCL2 / TNFRSF18); the page says which markers
    were left out.
    """
    state = dict(state or {})
    accept = _first(state.get("accept_missing"))
    cd8_input = {
        "metric": state.get("metric"),
        "definition": state.get("definition"),
        "gate": state.get("gate"),
        "gate_name": state.get("gate_name"),
        "accept_missing": accept if "accept_missing" in state else "1",
    }
    cd8 = cd8_state.parse_state(cd8_input, samples=samples, genes=genes)
    fallbacks = [f for f in cd8.fallbacks if f.key not in ("color", "gene")]
    program = cd8_state.match_choice(
        _first(state.get("program")), programs.PROGRAM_BY_KEY
    )
    if program not in programs.PROGRAM_BY_KEY:
        if program:
            fallbacks.append(
                cd8_state.Fallback(
                    "program",
                    KEY_LABELS["program"],
                    program,
                    programs.PROGRAM_BY_KEY[DEFAULT_PROGRAM].label,
                    "is not a program of this page",
                )
            )
        program = DEFAULT_PROGRAM
    return MechanismState(cd8=cd8, program=program, fallbacks=tuple(fallbacks))


# ------------------------------------------------------------------- gene means
_GENE_LOCK = threading.Lock()
_GENE_MEANS: OrderedDict[tuple, pd.DataFrame] = OrderedDict()


def gene_means(data: cd8_state.CellData, genes: tuple[str, ...]) -> pd.DataFrame:
    """Patients x genes: mean expression over each patient's CD8 cells.

    Remembered per process for the last few (cells, genes) pairs: the gene view is
    redrawn on every control change and reads one column per gene.
    """
    key = (
        str(data.store.path),
        data.store.n_cells,
        hash(data.cells.tobytes()),
        genes,
    )
    with _GENE_LOCK:
        hit = _GENE_MEANS.get(key)
        if hit is not None:
            return hit
    n = len(data.patients)
    out = pd.DataFrame(
        {
            g: programs.patient_means(data.expression(g), data.patient_codes, n)[0]
            for g in genes
        },
        index=data.patients["key"].to_numpy(),
    )
    with _GENE_LOCK:
        _GENE_MEANS[key] = out
        while len(_GENE_MEANS) > 4:
            _GENE_MEANS.popitem(last=False)
    return out


# ------------------------------------------------------------------------ numbers
def _cd8_covariate(samples: pd.DataFrame, keys: pd.Series) -> tuple[pd.Series, str]:
    pre = samples[samples["timepoint"] == "pre"]
    key = pre["cohort"].astype(str) + "|" + pre["patient_id"].astype(str)
    for column, label in CD8_COVARIATES.items():
        if column in pre.columns:
            values = pd.to_numeric(pre[column], errors="coerce").groupby(key).mean()
            mapped = keys.map(values)
            if mapped.notna().sum() >= chain.MIN_PATIENTS:
                return mapped.astype(float), label
    return pd.Series(np.nan, index=keys.index), ""


def _correlation(c: chain.Correlation) -> dict:
    return {
        "rho": c.rho,
        "ci_low": c.low,
        "ci_high": c.high,
        "p": c.p,
        "n": c.n,
        "message": c.message,
    }


def _two_groups(table, column, groups, labels, quantity) -> dict:
    pos, neg = labels
    test = mann_whitney(
        table.loc[groups == pos, column], table.loc[groups == neg, column]
    )
    return {
        "n": {pos: test.n1, neg: test.n2},
        "u": test.u,
        "p": test.p,
        "r": test.r,
        "test": test.test,
        "message": test.message,
        "direction": ""
        if test.message
        else direction_sentence(
            test.r,
            quantity=quantity,
            responders=_plural(pos),
            non_responders=_plural(neg),
        ),
    }


def _plural(group: str) -> str:
    """``Responder`` -> ``responders``; other group names as they are."""
    return {"Responder": "responders", "Non-responder": "non-responders"}.get(
        group, group
    )


def _rho_sentence(rho: float, x: str, y: str) -> str:
    if not np.isfinite(rho):
        return f"direction of {y} with {x} not estimable"
    word = "higher" if rho > 0 else "lower" if rho < 0 else "the same"
    return f"patients with more {x} have a {word} {y} (rho = {rho:.2f})"


def _programs_info(scored) -> dict:
    return {
        p.key: {
            "label": p.label,
            "source": p.source,
            "caveat": p.caveat,
            "role": p.role,
            "scored": p in scored,
        }
        for p in programs.PROGRAMS
    }


def _bulk_result(view, page: MechanismState, out: dict) -> dict:
    """The chain from bulk ``score_program_*`` columns (one value per sample)."""
    from analysis.nk_metrics import patient_metric
    from analysis.response import DEFINITIONS, assign_response

    samples = view.samples
    columns = {p: programs.BULK_PREFIX + p.key for p in programs.PROGRAMS}
    scored = [
        p
        for p, c in columns.items()
        if c in samples.columns
        and pd.to_numeric(samples[c], errors="coerce").notna().any()
    ]
    out.update(programs_info=_programs_info(scored), coverage={}, data_kind="bulk")
    if not scored:
        out["message"] = (
            "This dataset has neither CD8 single-cell data nor bulk program scores "
            "(score_program_* columns): import an expression matrix (`cli.py import "
            "expression`) to score the programs per sample."
        )
        return to_jsonable(out)
    if not page.cd8.metric:
        out["message"] = "No NK metric for these samples."
        return to_jsonable(out)
    table = patient_metric(samples, page.cd8.metric, timepoint="pre")
    if table.empty:
        out["message"] = "No pre-treatment samples in this view."
        return to_jsonable(out)
    table["key"] = table["cohort"].astype(str) + "|" + table["patient_id"].astype(str)
    table["nk"] = table["value"].astype(float)
    for p in scored:
        table[p.key] = pd.to_numeric(table[columns[p]], errors="coerce")
    definition = DEFINITIONS[page.cd8.definition]
    note = ""
    if not definition.binary:
        note = "RECIST collapsed to objective response (CR/PR vs SD/PD)"
        definition = DEFINITIONS["objective"]
    groups = pd.Series(  # pd.NA compares as NA, not False
        [
            g if isinstance(g, str) else None
            for g in assign_response(table, definition.key)
        ],
        dtype=object,
    )
    table = table.reset_index(drop=True)
    table["group"] = groups
    pos, neg = definition.groups[0], definition.groups[1]
    table["response_binary"] = np.where(
        groups == pos, 1.0, np.where(groups == neg, 0.0, np.nan)
    )
    covariate, covariate_label = _cd8_covariate(samples, table["key"])
    table["cd8_infiltration"] = covariate.to_numpy()
    metric = next(
        (m.label for m in available_metrics(samples) if m.key == page.cd8.metric), ""
    )
    gate_error = (
        "Gate+ / gate- cells need single-cell data; this dataset has bulk "
        "expression scores only"
    )
    out.update(
        n_patients=len(table),
        n_cells=0,
        metric={"key": page.cd8.metric, "label": metric},
        definition={"key": page.cd8.definition, "label": definition.label},
        groups={"responders": pos, "non_responders": neg, "note": note},
        n_per_group={pos: int((groups == pos).sum()), neg: int((groups == neg).sum())},
        gate={"phenotype": page.cd8.gate.phenotype, "name": "", "missing": [],
              "note": "", "cells_in_gate": None, "error": gate_error},
        covariate=covariate_label,
    )  # fmt: skip
    _statistics(
        out,
        table,
        scored=scored,
        groups=groups,
        labels=(pos, neg),
        metric_label=metric,
        has_metric=True,
        gate_result=None,
        page=page,
        gene_view=None,
    )
    return to_jsonable(out)


def mechanism_result(view, state: Mapping[str, object] | None) -> dict:
    """Every number of the mechanism page for ``view`` and the page ``state``.

    Returns
    -------
    dict
        JSON-ready (NaN as ``None``): ``state`` (resolved), ``fallbacks``,
        ``n_patients``, ``n_cells``, ``metric``, ``definition``, ``groups``,
        ``gate`` (phenotype, missing markers, cells in gate), ``rule``, ``coverage``
        (per program: found/total, removed, missing, scored), ``programs`` (per
        program: ``vs_nk``, ``by_response``, ``gate_pos``, ``gate_neg``),
        ``gate_fraction``, ``covariate``, ``matrix`` (pairwise rho and partial rho),
        ``genes`` (top per-gene rho with the NK metric), ``table`` (per patient), and
        ``message`` when there is nothing to analyse.
    """
    from data.cells import cell_store

    store = cell_store(view.bundle)
    genes = store.var_names if store is not None else None
    samples = view.samples
    page = parse_state(state, samples=samples, genes=genes)
    out: dict = {
        "page": PAGE_ID,
        "state": page.to_dict(),
        "fallbacks": [f._asdict() for f in page.fallbacks],
        "rule": programs.RULE,
        "attribution": programs.MSIGDB_ATTRIBUTION,
        "message": "",
    }
    if store is None:
        return _bulk_result(view, page, out)
    meta = programs.read_scores_meta(store.path)
    scored = [p for p in programs.PROGRAMS if p.column in store.obs.columns]
    out["coverage"] = meta.coverage if meta else {}
    out["programs_info"] = _programs_info(scored)
    out["data_kind"] = "single-cell"
    if not scored:
        out["message"] = (
            "No program scores are stored with these cells: re-import the file or "
            "run `python cli.py prepare` (it scores the programs)."
        )
        return to_jsonable(out)
    data = cd8_state.cached_cell_data(view, page.cd8)
    if data is None:
        out["message"] = "No CD8 cells in the filtered samples."
        return to_jsonable(out)
    try:
        gate_result = cd8_state.evaluate(data, page.cd8)
        gate_error = ""
    except gating.GateError as err:
        gate_result, gate_error = None, str(err)
    values = {
        p.key: store.obs[p.column].to_numpy()[data.cells].astype(np.float64)
        for p in scored
    }
    table = programs.patient_program_table(
        values,
        data.patient_codes,
        data.patients,
        in_gate=None if gate_result is None else gate_result.in_gate,
    )
    groups, pos, neg, collapse_note = cd8_state.binary_groups(data)
    groups = groups.reset_index(drop=True)
    table["response_binary"] = np.where(
        groups == pos, 1.0, np.where(groups == neg, 0.0, np.nan)
    )
    covariate, covariate_label = _cd8_covariate(samples, table["key"])
    table["cd8_infiltration"] = covariate.to_numpy()
    metric_label = data.metric.label if data.metric else ""
    out.update(
        n_patients=len(table),
        n_cells=int(data.n_cells),
        metric={"key": page.cd8.metric, "label": metric_label},
        definition={"key": page.cd8.definition, "label": data.definition.label},
        groups={"responders": pos, "non_responders": neg, "note": collapse_note},
        n_per_group={pos: int((groups == pos).sum()), neg: int((groups == neg).sum())},
        gate={
            "phenotype": page.cd8.gate.phenotype,
            "name": page.cd8.gate.display_name,
            "missing": list(gate_result.missing) if gate_result else [],
            "note": gate_result.note if gate_result else gate_error,
            "cells_in_gate": gate_result.n_in if gate_result else None,
            "error": gate_error,
        },
        covariate=covariate_label,
    )
    _statistics(
        out,
        table,
        scored=scored,
        groups=groups,
        labels=(pos, neg),
        metric_label=metric_label,
        has_metric=bool(data.metric),
        gate_result=gate_result,
        page=page,
        gene_view=lambda used: gene_means(data, used),
    )
    return to_jsonable(out)


def _statistics(
    out: dict,
    table: pd.DataFrame,
    *,
    scored,
    groups: pd.Series,
    labels: tuple[str, str],
    metric_label: str,
    has_metric: bool,
    gate_result,
    page: MechanismState,
    gene_view,
) -> None:
    """The chain's statistics from the per-patient ``table`` (cells or bulk)."""
    pos, neg = labels
    nk_name = metric_label or "NK"
    # a metric column without values (e.g. a single-cell import with no fractions)
    has_nk = has_metric and bool(table["nk"].notna().any())
    out["nk_values"] = int(table["nk"].notna().sum())
    per_program = {}
    for p in scored:
        entry = {
            "vs_nk": _correlation(chain.spearman(table["nk"], table[p.key])),
            "by_response": _two_groups(
                table, p.key, groups, (pos, neg), f"{p.label} score"
            ),
        }
        entry["vs_nk"]["direction"] = _rho_sentence(
            entry["vs_nk"]["rho"] or np.nan, f"NK ({nk_name})", f"{p.label} score"
        )
        if gate_result is not None:
            for side, word in (("gate_pos", "gate+"), ("gate_neg", "gate-")):
                entry[side] = _two_groups(
                    table,
                    f"{p.key}_{side}",
                    groups,
                    (pos, neg),
                    f"{p.label} score in {word} cells",
                )
        per_program[p.key] = entry
    out["programs"] = per_program
    variables = {"nk": f"NK ({nk_name})"} if has_nk else {}
    variables |= {p.key: p.label for p in scored}
    if gate_result is not None:
        out["gate_fraction"] = {
            "vs_nk": _correlation(chain.spearman(table["nk"], table["gate_fraction"])),
            "by_response": _two_groups(
                table, "gate_fraction", groups, (pos, neg), "gate fraction"
            ),
        }
        variables["gate_fraction"] = "gate fraction"
    variables["response_binary"] = f"response ({pos} = 1)"
    matrix = chain.chain_matrix(
        table, variables, covariate="cd8_infiltration" if out["covariate"] else None
    )
    out["matrix"] = matrix.to_dict(orient="records")
    focus = programs.PROGRAM_BY_KEY[page.program]
    cov = out["coverage"].get(focus.key, {})
    used = tuple(cov.get("used", ())) if focus in scored else ()
    gene_rows = pd.DataFrame()
    if used and has_nk and gene_view is not None:
        means = gene_view(used)
        gene_rows = chain.gene_correlations(
            means, table["nk"].to_numpy(), top=TOP_GENES
        )
    out["genes"] = {
        "program": focus.key,
        "target": f"NK ({nk_name})",
        "n_genes_tested": len(used),
        "rows": gene_rows.to_dict(orient="records"),
        "message": ""
        if used and has_nk and gene_view is not None
        else (
            "The gene view needs single-cell data (per-gene means of each patient's "
            "CD8 cells); this dataset has bulk expression scores only"
            if gene_view is None
            else "No pre-treatment NK values for these patients: the gene view needs "
            "them"
            if not has_nk
            else f"{focus.label} is not scored for this dataset"
        ),
    }
    keep = [
        "key", "cohort", "patient_id", "n_cells", "nk", "group", "response_binary",
        "cd8_infiltration", *(p.key for p in scored),
    ]  # fmt: skip
    keep = [c for c in keep if c in table.columns]
    if gate_result is not None:
        keep += ["n_gate_pos", "gate_fraction"]
        keep += [f"{p.key}_{s}" for p in scored for s in ("gate_pos", "gate_neg")]
    out["table"] = table[keep].to_dict(orient="records")
