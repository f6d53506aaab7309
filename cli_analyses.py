"""Subcommands of ``cli.py`` for the analysis pages: mechanism, de, evidence.

Each prints the numbers of its page (``/mechanism``, ``/compare``, ``/evidence``) as
text or JSON; ``cli.py`` registers them. Kept apart from ``cli.py`` so neither file
grows past a readable size.
"""

from __future__ import annotations

import argparse
import sys

from cli import _data_dir, resolve_cli_filter
from config import DEMO_NAME


# ------------------------------------------------------------------------ mechanism
def cmd_mechanism(args: argparse.Namespace) -> int:
    """NK -> programs -> gate -> response per patient, as on the /mechanism page."""
    import json

    from data.view import cohort_view
    from figures.mechanism import coverage_lines
    from figures.mechanism_state import mechanism_result

    data_dir = _data_dir(args)
    flt = resolve_cli_filter(
        {
            "dataset": args.dataset,
            "tumor_type": args.tumor_type,
            "treatment": args.treatment,
            "cohort": args.cohort,
        },
        data_dir=data_dir,
        default_dataset=DEMO_NAME,
    )
    view = cohort_view(flt, data_dir=data_dir, default_dataset=DEMO_NAME)
    state = {
        k: v
        for k, v in {
            "metric": args.metric,
            "definition": args.response,
            "program": args.program,
            "gate": args.gate,
        }.items()
        if v
    }
    result = mechanism_result(view, state)
    asked = [f for f in result["fallbacks"] if f["key"] in state]
    for f in asked:  # a script asked explicitly: refuse rather than fall back
        print(
            f"ERROR --{f['key']} {f['value']}: {f['label']} {f['reason']} "
            f"({view.filter.describe()}); the page would show {f['shown']}.",
            file=sys.stderr,
        )
    if asked:
        return 1
    report = dict(view.provenance, **result)
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
        return 0
    if result["message"]:
        print(result["message"])
        return 0
    print(
        f"{view.bundle.meta.label}: {result['n_patients']} patients, "
        f"{result['n_cells']:,} CD8 cells; NK metric: {result['metric']['label']}"
    )
    for line in coverage_lines(result):
        print(f"  {line}")
    for key, entry in result["programs"].items():
        label = result["programs_info"][key]["label"]
        vs, mw = entry["vs_nk"], entry["by_response"]
        print(f"{label}: {vs['message'] or vs['direction']}" + (
            f", 95% CI {vs['ci_low']:.2f} to {vs['ci_high']:.2f}, p = {vs['p']:.3g}"
            if not vs["message"] else ""
        ))  # fmt: skip
        print(f"  by response: {mw['message'] or mw['direction']}")
    print("Use --json for every statistic (gate+/gate-, matrix, partials, genes)")
    return 0


def add_mechanism(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mechanism",
        help="IFN-alpha / IL-2 / RA programs vs NK and response (as on /mechanism)",
    )
    p.add_argument("--dataset", default=DEMO_NAME, help="dataset name or bundle path")
    for flag in ("--tumor-type", "--treatment", "--cohort"):
        p.add_argument(
            flag, nargs="+", action="extend", default=[], metavar="VALUE",
            help="keep only these values (repeatable)",
        )  # fmt: skip
    p.add_argument("--metric", default=None, help="NK metric key (as on the page)")
    p.add_argument(
        "--response",
        default=None,
        choices=["objective", "benefit", "recist", "reported"],
        help="response definition",
    )
    p.add_argument(
        "--program", default=None, help="program of the gene view: ifna|il2|ra|ifng"
    )
    p.add_argument("--gate", default=None, help="gate as in a /cd8-states link")
    p.add_argument("--json", action="store_true", help="print JSON (as the page)")
    p.set_defaults(func=cmd_mechanism)


# ------------------------------------------------------------------------------- de


def cmd_de(args: argparse.Namespace) -> int:
    """Pseudobulk differential expression between two cell sets (as on /compare)."""
    import json

    from analysis.cellsets import CellSetError
    from analysis.pseudobulk import DEError
    from data.cellsets_store import SavedSetError
    from data.view import cohort_view
    from figures.de import COVARIATE_CHOICES, Comparison, run_comparison, saved_sets_of

    data_dir = _data_dir(args)
    flt = resolve_cli_filter(
        {
            "dataset": args.dataset,
            "tumor_type": args.tumor_type,
            "treatment": args.treatment,
            "cohort": args.cohort,
        },
        data_dir=data_dir,
        default_dataset=DEMO_NAME,
    )
    view = cohort_view(flt, data_dir=data_dir, default_dataset=DEMO_NAME)
    covariates = tuple(c.strip() for c in (args.covariates or "").split(",") if c)
    unknown = [c for c in covariates if c not in COVARIATE_CHOICES]
    if unknown:
        print(
            f"ERROR --covariates {','.join(unknown)}: not a patient field. Fix: use "
            f"any of {','.join(COVARIATE_CHOICES)}.",
            file=sys.stderr,
        )
        return 1
    request = Comparison(
        a=args.a,
        b=args.b,
        covariates=covariates,
        definition=args.response or "",
        min_cells=args.min_cells,
    )
    try:
        result = run_comparison(
            view, request, saved=saved_sets_of(view), n_cpus=args.cpus
        )
    except (CellSetError, DEError, SavedSetError) as err:
        print(f"ERROR {err}", file=sys.stderr)
        return 1
    report = result.to_dict(top=args.top)
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
        return 0
    de = result.de
    print(f"{report['set_a_label']}  vs  {report['set_b_label']}")
    print(f"method: {de.method}")
    print(
        f"design: {de.design}; patients A {de.n_patients['A']}, B {de.n_patients['B']}"
    )
    print(f"dropped samples: {len(de.dropped)}; genes tested {len(de.table):,}")
    for note in de.notes:
        print(f"note: {note}")
    shown = de.table.head(args.top or 20)
    columns = [
        "gene",
        "log2FC",
        "lfcSE",
        "pvalue",
        "padj",
        "baseMean",
        "pct_A",
        "pct_B",
    ]
    print(shown[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def add_de(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "de",
        help="pseudobulk differential expression between two cell sets (as /compare)",
    )
    p.add_argument("--dataset", default=DEMO_NAME, help="dataset name or bundle path")
    p.add_argument(
        "--a", required=True, metavar="SET",
        help="set A: gate, not:gate, gate:RULE, state:NAME, response:R|NR "
        "(+state:NAME), patients:KEY,..., lasso:x,y;..., or a saved set's name",
    )  # fmt: skip
    p.add_argument("--b", required=True, metavar="SET", help="set B (as --a)")
    for flag in ("--tumor-type", "--treatment", "--cohort"):
        p.add_argument(
            flag, nargs="+", action="extend", default=[], metavar="VALUE",
            help="keep only these values (repeatable)",
        )  # fmt: skip
    p.add_argument(
        "--covariates", default="", help="comma-separated: cohort,tumor_type,treatment"
    )
    p.add_argument(
        "--response",
        default=None,
        choices=["objective", "benefit", "reported"],
        help="response definition behind response:R/NR (default: objective)",
    )
    p.add_argument(
        "--min-cells", type=int, default=10,
        help="minimum cells of a set in a patient (default 10)",
    )  # fmt: skip
    p.add_argument("--top", type=int, default=None, help="only the first N genes")
    p.add_argument("--cpus", type=int, default=1, help="processes for PyDESeq2")
    p.add_argument("--json", action="store_true", help="print JSON (see README)")
    p.set_defaults(func=cmd_de)


# ------------------------------------------------------------------------- evidence


def cmd_evidence(args: argparse.Namespace) -> int:
    """NK vs response pooled across cohorts of several datasets (as on /evidence)."""
    import json

    from analysis.evidence_view import answering_datasets, evidence
    from analysis.multiverse import multiverse, summarize
    from analysis.nk_metrics import available_metrics
    from data.registry import get_bundle

    data_dir = _data_dir(args)
    datasets = args.datasets or answering_datasets(data_dir)
    if not datasets:
        print(
            f"ERROR no dataset in {data_dir} has an NK estimate and a response. "
            "Fix: import one (`python cli.py import`) or pass --datasets.",
            file=sys.stderr,
        )
        return 1
    offered: set[str] = set()
    for name in datasets:
        offered |= {m.key for m in available_metrics(get_bundle(name, data_dir).cohort)}
    if args.metric not in offered:
        print(
            f"ERROR --metric {args.metric}: no selected dataset has this metric. "
            f"Fix: --metric one of {', '.join(sorted(offered)) or 'none'}.",
            file=sys.stderr,
        )
        return 1
    filters = {"tumor_type": args.tumor_type, "treatment": args.treatment}
    result = evidence(
        datasets, data_dir, metric=args.metric, definition=args.response,
        timepoint=args.timepoint, filters=filters,
    )  # fmt: skip
    report = result.to_dict()
    specs = ()
    if args.multiverse:
        specs = multiverse(datasets, data_dir, filters=filters)
        report["multiverse"] = [s.to_json() for s in specs]
        report["multiverse_summary"] = summarize(specs).sentence()
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
        return 0
    print(_evidence_text(report))
    if specs:
        print(report["multiverse_summary"])
    return 0


def _evidence_text(report: dict) -> str:
    def num(x) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    lines = [
        f"NK metric: {report['metric_label']} ({report['metric']}); response: "
        f"{report['response_definition']}; timepoint: {report['timepoint']}; "
        f"filters: {report['filters']}",
        "r > 0: lower metric in responders. Per cohort (rank-biserial r, 95% CI):",
    ]
    for c in report["cohorts"]:
        note = f"  [{c['message']}]" if c["message"] else ""
        lines.append(
            f"  {c['cohort']} ({c['dataset']}, {c['tumor_type']}, "
            f"{c['treatment_class']}): n = {c['n_responders']} R / "
            f"{c['n_non_responders']} NR, r = {num(c['r'])} "
            f"[{num(c['ci_low'])}, {num(c['ci_high'])}]{note}"
        )
    for p in report["pooled"].values():
        lines.append(
            f"Pooled {p['method']}: k = {p['k']}, r = {num(p['r'])} "
            f"[{num(p['ci_low'])}, {num(p['ci_high'])}], p = {num(p['p'])}, "
            f"tau2 = {num(p['tau2'])}, I2 = {num(p['i2'])}, prediction interval "
            f"[{num(p['pi_low'])}, {num(p['pi_high'])}]"
        )
    lines.append(report["direction"])
    lines += report["notes"]
    return "\n".join(lines)


def add_evidence(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evidence", help="NK vs response pooled across cohorts (as on /evidence)"
    )
    p.add_argument(
        "--datasets", nargs="+", default=[], metavar="NAME",
        help="datasets to pool (default: every dataset with an NK estimate and a "
        "response)",
    )  # fmt: skip
    p.add_argument(
        "--metric", default="nk_lymphocytes",
        help="frac_nk | nk_lymphocytes | nk_over_nk_cd8 | log2_nk_cd8 | score_*",
    )  # fmt: skip
    p.add_argument(
        "--response", default="objective", choices=list(BINARY_DEFINITIONS_CLI),
        help="binary response definition (default: objective)",
    )  # fmt: skip
    for flag in ("--tumor-type", "--treatment"):
        p.add_argument(
            flag, nargs="+", action="extend", default=[], metavar="VALUE",
            help="keep only these values in every dataset (case ignored)",
        )  # fmt: skip
    p.add_argument("--timepoint", default="pre", choices=["pre", "on", "post"])
    p.add_argument(
        "--multiverse", action="store_true",
        help="also pool every estimator x denominator x definition x timepoint",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON (see README)")
    p.set_defaults(func=cmd_evidence)


#: binary response definitions (analysis.meta.BINARY_DEFINITIONS, without importing
#: pandas when the parser is built)
BINARY_DEFINITIONS_CLI = ("objective", "benefit", "reported")
