"""The key numbers of a panel as one compact line, for exports without a title.

Journals set titles in the figure legend, so the publication presets drop the title;
the test, p, effect with CI and n per group must still be in the figure itself. They
come from the panel's provenance (``stats`` of the NK page, the CD8 page's record),
and for figures whose numbers live only in the title, from the title's lines that
carry a statistic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from analysis.stats import format_p
from figures.panel import Panel

#: a title line that carries a statistic (p, AUC, HR, rho, r, OR, U, n=)
_STAT_LINE = re.compile(
    r"(\bp\s*[<=>]|\bAUC\b|\bHR\b|\brho\b|\br\s*=|\bOR\b|\bU\s*=|\bn\s*=|I²)"
)


def _num(value: object, digits: int = 2) -> str:
    return f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def _ok(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(float(value))


def _plain(text: str) -> str:
    # only real tags: a statistic may read "p < 0.05"
    return re.sub(r"</?[a-zA-Z][^>]*>", "", text).strip()


def title_stat_lines(title: str) -> list[str]:
    """The lines of a plotly title that state a statistic, tags removed."""
    lines = [_plain(line) for line in re.split(r"<br\s*/?>", title or "")]
    return [line for line in lines if line and _STAT_LINE.search(line)]


def _groups(stats: Mapping) -> str:
    groups = stats.get("groups") or []
    return ", ".join(f"{g['group']} n={g['n']}" for g in groups if "n" in g)


def _nk_stats(key: str, stats: Mapping) -> str:
    """Compact statistic of an NK-page panel from its ``stats`` record."""
    mw = stats.get("mann_whitney") or {}
    auc = stats.get("auc") or {}
    if key == "nk-box" and _ok(mw.get("p")):
        return (
            f"Mann-Whitney U {format_p(mw['p'])}; rank-biserial r = "
            f"{_num(mw['rank_biserial_r'])}; {_groups(stats)}"
        )
    if key == "nk-roc" and _ok(auc.get("auc")):
        ci = (
            f" (95% CI {_num(auc['ci_low'])} to {_num(auc['ci_high'])})"
            if _ok(auc.get("ci_low"))
            else ""
        )
        return (
            f"AUC = {_num(auc['auc'])}{ci}; n = {auc.get('n_responders')} "
            f"responders, {auc.get('n_non_responders')} non-responders"
        )
    if key == "nk-forest":
        pooled = (stats.get("pooled") or {}).get("tumor_type") or {}
        if _ok(pooled.get("rank_biserial_r")):
            return (
                f"Pooled over {pooled.get('k')} tumor types: r = "
                f"{_num(pooled['rank_biserial_r'])} (95% CI {_num(pooled['ci_low'])} "
                f"to {_num(pooled['ci_high'])}), {format_p(pooled.get('p'))}, "
                f"I² = {100 * float(pooled.get('i2') or 0):.0f}%"
            )
    if key.startswith("nk-km-"):
        surv = (stats.get("survival") or {}).get(key.removeprefix("nk-km-")) or {}
        cox = surv.get("cox_unadjusted") or {}
        parts = []
        if _ok(surv.get("logrank_p")):
            parts.append(f"log-rank {format_p(surv['logrank_p'])}")
        if _ok(cox.get("hr")):
            parts.append(
                f"Cox HR per SD {_num(cox['hr'])} (95% CI {_num(cox['ci_low'])} to "
                f"{_num(cox['ci_high'])}), {format_p(cox.get('p'))}"
            )
        groups = ", ".join(f"{g['group']} n={g['n']}" for g in surv.get("groups") or [])
        if parts:
            return "; ".join([*parts, groups] if groups else parts)
    if key == "nk-logistic":
        logit = stats.get("logistic") or {}
        metric = next(
            (t for t in logit.get("terms") or [] if t["term"].startswith("z(")), None
        )
        if metric and _ok(metric.get("odds_ratio")):
            formula = str(logit.get("formula") or "")
            formula = re.sub(r"C\((\w+)\)", lambda m: m[1].replace("_", " "), formula)
            return (
                f"Logistic regression {formula}, n = {logit.get('n')} "
                f"({logit.get('n_events')} responders): OR per SD of the metric "
                f"{_num(metric['odds_ratio'])} (95% CI "
                f"{_num(metric['ci_low'])} to {_num(metric['ci_high'])}), "
                f"{format_p(metric.get('p'))}"
            )
    if key == "nk-paired":
        paired = [g for g in stats.get("paired") or [] if _ok(g.get("p"))]
        if paired:
            return "Wilcoxon signed-rank, pre vs on: " + "; ".join(
                f"{g['group']} n={g['n']}, {format_p(g['p'])}" for g in paired
            )
    return ""


def _cd8_stats(key: str, prov: Mapping) -> str:
    """Compact statistic of a CD8-page panel from its provenance record."""
    if key == "gate-box" and _ok(prov.get("p_value")):
        groups = ", ".join(
            f"{g} n={n}" for g, n in (prov.get("n_per_group") or {}).items()
        )
        r = prov.get("rank_biserial_r")
        effect = f"; rank-biserial r = {_num(r)}" if _ok(r) else ""
        return (
            f"{prov.get('test', 'test')} {format_p(prov['p_value'])}{effect}; {groups}"
        )
    if key == "gate-nk" and _ok(prov.get("rho")):
        return (
            f"Spearman rho = {_num(prov['rho'])}, {format_p(prov.get('p_value'))}, "
            f"n = {prov.get('n')} patients"
        )
    return ""


def _ci(low: object, high: object) -> str:
    return f" (95% CI {_num(low)} to {_num(high)})" if _ok(low) and _ok(high) else ""


def _mw(test: Mapping, *, with_n: bool = True) -> str:
    if not _ok(test.get("p")):
        return str(test.get("message") or "not tested")
    groups = ", ".join(f"{g} n={n}" for g, n in (test.get("n") or {}).items())
    effect = f"{format_p(test['p'])}, r = {_num(test['r'])}"
    return f"{effect} ({groups})" if with_n else effect


#: program names as the mechanism page's subplots print them
SHORT_PROGRAMS = {"ifna": "IFN-alpha", "il2": "IL-2/STAT5", "ra": "RA targets",
                  "ifng": "IFN-gamma"}  # fmt: skip


def _mechanism_stats(key: str, stats: Mapping) -> str:
    """Compact statistic of a mechanism panel for the program the page shows."""
    programs = stats.get("programs") or {}
    program = str((stats.get("state") or {}).get("program") or "")
    if program not in programs:
        program = next(iter(programs), "")
    if not program:
        return ""
    label = ((stats.get("programs_info") or {}).get(program) or {}).get("label")
    label = label or program
    one = programs[program]
    corr = one.get("vs_nk") or {}
    if key in ("mech-nk", "mech-matrix") and _ok(corr.get("rho")):
        return (
            f"Spearman, {label} vs NK: rho = {_num(corr['rho'])}"
            f"{_ci(corr.get('ci_low'), corr.get('ci_high'))}, "
            f"{format_p(corr.get('p'))}, n = {corr.get('n')} patients"
        )
    if key == "mech-response" and _ok((one.get("by_response") or {}).get("p")):
        return f"Mann-Whitney U, {label} by response: {_mw(one['by_response'])}"
    if key == "mech-gate" and _ok((one.get("gate_pos") or {}).get("p")):
        pos, neg = one["gate_pos"], one.get("gate_neg") or {}
        groups = ", ".join(f"{g} n={n}" for g, n in (pos.get("n") or {}).items())
        # short: a column figure of eight subplots has little height to spare
        return (
            f"Mann-Whitney, {SHORT_PROGRAMS.get(program, label)}: gate+ "
            f"{_mw(pos, with_n=False)}; gate- {_mw(neg, with_n=False)}; {groups}"
        )
    genes = stats.get("genes") or {}
    rows = genes.get("rows") or []
    if key == "mech-genes" and rows and _ok(rows[0].get("rho")):
        top = rows[0]
        return (
            f"Spearman per gene vs NK, n = {top.get('n')} patients, "
            f"{genes.get('n_genes_tested')} genes tested; top: {top['gene']} rho = "
            f"{_num(top['rho'])}{_ci(top.get('low'), top.get('high'))}, "
            f"{format_p(top.get('p'))}"
        )
    return ""


def _compare_stats(panel: Panel) -> str:
    """Design, patients per group and genes at padj < 0.05 (the /compare page)."""
    prov = panel.provenance or {}
    if panel.key == "composition":
        table = panel.table
        if table is None or table.empty or "n_R" not in table:
            return ""
        # the method in short (the caption and metadata carry it in full)
        return (
            "CLR of state counts, Mann-Whitney U per state, BH; Responder "
            f"n={int(table['n_R'].max())}, Non-responder n={int(table['n_NR'].max())}"
        )
    if panel.key not in ("volcano", "heatmap") or "n_patients_A" not in prov:
        return ""
    test = "PyDESeq2 Wald" if "PyDESeq2" in str(prov.get("test")) else "DE test"
    line = (
        f"Pseudobulk {test}, design {prov.get('design')}; n = "
        f"{prov['n_patients_A']} (A) vs {prov.get('n_patients_B')} (B) patients"
    )
    table = panel.table
    if panel.key == "volcano" and table is not None and "padj" in table:
        hits = int((table["padj"] < 0.05).sum())
        line += f"; {hits} of {len(table)} genes at BH padj < 0.05"
    return line


def _evidence_stats(panel: Panel) -> str:
    """Pooled r with CI, p, I² and k (the /evidence page)."""
    prov = panel.provenance or {}
    if panel.key == "evidence-multiverse":
        lines = re.split(r"<br\s*/?>", str(panel.figure.layout.title.text or ""))
        found = [_plain(line) for line in lines if re.search(r"Of \d+ spec", line)]
        return found[0] if found else ""
    if panel.key == "evidence-adjusted":
        return "; ".join(title_stat_lines(panel.figure.layout.title.text or ""))
    pooled = (prov.get("pooled") or {}).get("reml_hk") or {}
    if not _ok(pooled.get("r")):
        return ""
    return (
        f"Pooled (REML, Hartung-Knapp) over k = {pooled.get('k')} cohorts: r = "
        f"{_num(pooled['r'])}{_ci(pooled.get('ci_low'), pooled.get('ci_high'))}, "
        f"{format_p(pooled.get('p'))}, I² = {100 * float(pooled.get('i2') or 0):.0f}%"
    )


def stats_line(panel: Panel) -> str:
    """The panel's key numbers (test, p, effect with CI, n per group) in one line.

    Empty when the panel tests nothing (a UMAP, a composition bar chart): then the
    export states n in the axis or legend labels the figure already has.

    Parameters
    ----------
    panel
        A panel as built by ``figures.reports.build_panels``.
    """
    prov = panel.provenance or {}
    stats = prov.get("stats")
    line = ""
    if panel.key.startswith("mech-") and isinstance(stats, Mapping):
        line = _mechanism_stats(panel.key, stats)
    elif panel.key in ("volcano", "heatmap", "composition"):
        line = _compare_stats(panel)
    elif panel.key.startswith("evidence-"):
        line = _evidence_stats(panel)
    elif isinstance(stats, Mapping):
        line = _nk_stats(panel.key, stats)
    if not line:
        line = _cd8_stats(panel.key, prov)
    if not line:
        title = panel.figure.layout.title.text or ""
        line = "; ".join(title_stat_lines(title))
    return line
