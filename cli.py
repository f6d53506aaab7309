"""Command-line interface: the app's capabilities for scripts and pipelines.

Run ``python cli.py --help`` for the commands. Every command reports bad input as a
readable message (file, column, row, fix) and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from config import DEMO_NAME, SettingsError, get_settings
from data.errors import DataError


def _data_dir(args: argparse.Namespace) -> Path:
    return (
        Path(args.data_dir)
        if getattr(args, "data_dir", None)
        else get_settings().data_dir
    )


def resolve_cli_filter(
    choices: object,
    *,
    data_dir: Path,
    default_dataset: str,
    flags: dict[str, str] | None = None,
    source: str = "filter",
):
    """The filter a command asked for, in the dataset's spelling; DataError if not.

    Values match ignoring case (``--tumor-type Melanoma``); a value that matches
    nothing stops the command with the valid values listed (exit 1), so a script
    never analyses more patients than it asked for. A dataset name also matches
    ignoring case; a bundle folder is used as given.
    """
    from data.filters import (
        CohortFilter,
        filter_options,
        match_value,
        require_known_values,
    )
    from data.registry import get_bundle, list_datasets

    flt = (
        choices
        if isinstance(choices, CohortFilter)
        else CohortFilter.from_mapping(choices)
    )
    name = flt.dataset or default_dataset
    if not (Path(name) / "dataset.json").exists():
        names = [entry.name for entry in list_datasets(data_dir)]
        name = match_value(name, names) or name
    bundle = get_bundle(name, data_dir)
    flt = CohortFilter.from_mapping(dict(flt.to_dict(), dataset=name))
    return require_known_values(
        flt, filter_options(bundle.cohort), flags=flags, source=source
    )


# ----------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the seeded synthetic demo bundle."""
    from data.demo import write_demo

    out = Path(args.out) if args.out else _data_dir(args) / DEMO_NAME
    if args.if_missing and (out / "dataset.json").exists():
        print(f"Demo bundle already present: {out}")
        return 0
    from data.demo import GENES_BASE

    if args.cells and args.cells < 150 * args.cell_patients:
        print(
            f"ERROR --cells {args.cells} is too few for {args.cell_patients} patients "
            "with cells (at least 150 each). Fix: lower --cell-patients.",
            file=sys.stderr,
        )
        return 1
    if args.genes is not None and args.genes < len(GENES_BASE):
        print(
            f"ERROR --genes {args.genes} is too small. Fix: use at least "
            f"{len(GENES_BASE)} (the marker genes).",
            file=sys.stderr,
        )
        return 1
    write_demo(
        out,
        n_cells=args.cells,
        n_cell_patients=args.cell_patients,
        seed=args.seed,
        n_patients=args.patients,
        n_genes=args.genes,
        umap_subsample=args.umap_subsample,
    )
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    from data.demo import SEED

    p = sub.add_parser("demo", help="generate the synthetic demo bundle")
    p.add_argument("--out", help="bundle folder (default: DATA_DIR/demo)")
    p.add_argument("--cells", type=int, default=36_000, help="CD8 T cells (0: none)")
    p.add_argument("--cell-patients", type=int, default=48, help="patients with cells")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument(
        "--patients", type=int, help="patients in total (default 480; benchmarks)"
    )
    p.add_argument(
        "--genes",
        type=int,
        help="genes in the h5ad: the 74 marker genes plus filler genes (benchmarks)",
    )
    p.add_argument(
        "--umap-subsample",
        type=int,
        metavar="N",
        help="UMAP on N seeded cells, the others placed by PCA neighbours "
        "(for 10^6 cells)",
    )
    p.add_argument(
        "--if-missing", action="store_true", help="do nothing when the bundle exists"
    )
    p.set_defaults(func=cmd_demo)


# ------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    """Print every problem of a bundle; exit 1 on any error, 0 when valid."""
    from data.bundle import validate_bundle
    from data.registry import resolve_dataset

    try:
        path = resolve_dataset(args.path, _data_dir(args))
    except DataError as err:
        print(f"ERROR {err}", file=sys.stderr)
        return 1
    problems = validate_bundle(path)
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        stream = sys.stderr if problem.severity == "error" else sys.stdout
        print(f"{problem.severity.upper()} {problem}", file=stream)
    if errors:
        print(
            f"{path}: {len(errors)} error(s); the bundle cannot be loaded.",
            file=sys.stderr,
        )
        return 1
    warnings = len(problems)
    print(f"{path}: valid" + (f" ({warnings} warning(s))" if warnings else "") + ".")
    return 0


def add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a dataset bundle (folder or name)")
    p.add_argument("path", help="bundle folder, or a dataset name in DATA_DIR")
    p.set_defaults(func=cmd_validate)


# ------------------------------------------------------------------------- add-user


def cmd_add_user(args: argparse.Namespace) -> int:
    """Add or replace a user in an AUTH_USERS_FILE (werkzeug password hash)."""
    import getpass
    import os

    from werkzeug.security import generate_password_hash

    name = args.name
    if not name or ":" in name or name != name.strip():
        print(
            "ERROR user names cannot contain ':' or spaces at the ends.",
            file=sys.stderr,
        )
        return 1
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {name}: ")
        if password != getpass.getpass("Repeat it: "):
            print("ERROR the two passwords differ; nothing written.", file=sys.stderr)
            return 1
    if len(password) < 10:
        print("ERROR use a password of at least 10 characters.", file=sys.stderr)
        return 1
    path = Path(args.file)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    lines = [line for line in lines if line.partition(":")[0].strip() != name]
    lines.append(f"{name}:{generate_password_hash(password)}")
    # written whole, readable by the service user only
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    print(f"{path}: user {name!r} saved ({len(lines)} line(s)).")
    return 0


def add_add_user(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "add-user", help="add or replace a user of AUTH_MODE=basic (hashed password)"
    )
    p.add_argument("file", help="users file (AUTH_USERS_FILE); created if missing")
    p.add_argument("name", help="user name")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    p.set_defaults(func=cmd_add_user)


# --------------------------------------------------------------- import, prepare


def cmd_import(args: argparse.Namespace) -> int:
    """Import a clinical table, CIBERSORT output, expression matrix or h5ad."""
    from data.importers.commands import run_import

    return run_import(args, _data_dir(args))


def add_import(sub: argparse._SubParsersAction) -> None:
    from data.importers.commands import add_import_arguments

    p = sub.add_parser("import", help="import your own data as a dataset bundle")
    add_import_arguments(p)
    p.set_defaults(func=cmd_import)


def cmd_prepare(args: argparse.Namespace) -> int:
    """Normalize, embed (UMAP) and cluster an h5ad into a new file."""
    from data.importers.commands import run_prepare

    return run_prepare(args)


def add_prepare(sub: argparse._SubParsersAction) -> None:
    from data.importers.commands import add_prepare_arguments

    p = sub.add_parser("prepare", help="compute what the UMAP page needs for an h5ad")
    add_prepare_arguments(p)
    p.set_defaults(func=cmd_prepare)


# ---------------------------------------------------------------------------- stats


#: CLI filter options of `stats` -> filter field.
def cmd_stats(args: argparse.Namespace) -> int:
    """NK metric vs response statistics, as on the /nk-response page."""
    import json

    from analysis.nk_metrics import available_metrics
    from analysis.nk_response import (
        MAX_LANDMARK,
        analyze_nk_response,
        resolve_state_fallbacks,
    )
    from analysis.response import DEFINITIONS, available_definitions
    from data.view import cohort_view

    data_dir = _data_dir(args)
    # the same resolver as the sidebar: values match ignoring case, and a value
    # that matches nothing stops the command listing the valid ones (DataError)
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
        "metric": args.metric,
        "definition": args.response,
        "nk_timepoint": args.timepoint,
        "split": args.split,
        "landmark": args.landmark,
    }
    # the page shows a notice and falls back; a script asked explicitly: refuse.
    # Definitions are checked against the filtered view: a view without RECIST
    # must not be analysed by the reported R/NR under --response objective.
    _, fallbacks = resolve_state_fallbacks(view.samples, state)
    if fallbacks:
        metrics = ", ".join(m.key for m in available_metrics(view.samples)) or "none"
        definitions = available_definitions(view.samples)
        offered = (
            ", ".join(f"{k} ({DEFINITIONS[k].label})" for k in definitions) or "none"
        )
        fixes = {
            "metric": f"--metric one of {metrics}",
            "definition": f"--response one of {offered} (the definitions this view "
            "offers)",
            "nk_timepoint": "--timepoint pre, on or post",
            "split": "--split median or tertile",
            "landmark": f"--landmark MONTHS with 0 < MONTHS <= {MAX_LANDMARK:g}, or "
            "no --landmark (survival from treatment start)",
        }
        flags = {"definition": "--response", "nk_timepoint": "--timepoint"}
        for f in fallbacks:
            reason = f.reason.replace("for the filtered patients", "for this view")
            print(
                f"ERROR {flags.get(f.key, '--' + f.key)} {f.requested}: {f.label} "
                f"“{f.value}” {reason} ({view.filter.describe()}). "
                f"Fix: {fixes[f.key]}.",
                file=sys.stderr,
            )
        return 1
    result = analyze_nk_response(view.samples, state)
    report = dict(view.provenance, **result.to_dict())
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
    else:
        print(_stats_text(report, result.exclusion_text))
    return 0


def _stats_text(report: dict, exclusions: str) -> str:
    from analysis.stats import format_p

    lines = [
        f"{report['dataset_title']} ({report['filters']})",
        f"Metric: {report['metric']['label']}; response: "
        f"{report['response_definition']['label']}; timepoint: {report['timepoint']}",
    ]
    if report["empty_message"]:
        return "\n".join([*lines, report["empty_message"]])
    lines.append(f"{report['n_patients']} patients analysed. {exclusions}")
    for g in report["groups"]:
        lines.append(
            f"  {g['group']}: n={g['n']}, median {g['median']:.4g} "
            f"(IQR {g['q1']:.4g}-{g['q3']:.4g})"
        )
    mw = report["mann_whitney"]
    if mw:
        lines.append(
            mw["message"]
            or f"Mann-Whitney U = {mw['u']:g}, {format_p(mw['p'])}, rank-biserial "
            f"r = {mw['rank_biserial_r']:.3f} (r > 0: lower in responders)"
        )
    kw = report["kruskal_wallis"]
    if kw and kw["p"] is not None:
        lines.append(f"Kruskal-Wallis H = {kw['h']:.2f}, {format_p(kw['p'])}")
    auc = report["auc"]
    direction = (mw or {}).get("direction") or (auc or {}).get("effect_direction")
    if direction:
        lines.append(f"Direction: {direction}.")
    if auc and auc["auc"] is not None:
        lines.append(
            f"AUC (lower metric predicts response) = {auc['auc']:.3f}"
            + (
                f" (95% CI {auc['ci_low']:.3f}-{auc['ci_high']:.3f})"
                if auc["ci_low"] is not None
                else ""
            )
            + (f"; {auc['message']}" if auc["message"] else "")
        )
        lines.append(f"  {auc['sentence']}.")
    lines += _survival_text(report)
    for warning in report["notes"]:
        lines.append(f"Note: {warning}")
    lines.append("Use --json for every statistic (strata, pooling, survival, logistic)")
    return "\n".join(lines)


def _survival_text(report: dict) -> list[str]:
    """Survival lines: where time starts, the NK groups' cut-offs, log-rank p."""
    from analysis.stats import format_p

    if report["survival_message"]:
        return [
            f"Survival: {report['survival_message']} (here: --timepoint pre, or "
            "--landmark MONTHS)"
        ]
    if not report["survival"]:
        return []
    landmark = report["landmark_months"]
    groups = report["nk_groups"]["definitions"]
    lines = [
        "Survival by NK group ("
        + "; ".join(f"{g}: {text}" for g, text in groups.items())
        + ")"
        + (
            ""
            if landmark is None
            else f", from a landmark {landmark:g} months after treatment start"
        )
        + ":"
    ]
    for surv in report["survival"].values():
        counts = ", ".join(
            f"{g['group']} n={g['n']} ({g['events']} events)" for g in surv["groups"]
        )
        test = (
            f"log-rank {format_p(surv['logrank_p'])}"
            if surv["logrank_p"] is not None
            else surv["message"]
        )
        excluded = (
            ""
            if landmark is None
            else f"; {surv['n_excluded_before_landmark']} excluded (follow-up ended "
            "by the landmark)"
        )
        lines.append(f"  {surv['endpoint']}: {counts}; {test}{excluded}")
    return lines


def add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats", help="NK metric vs response statistics (as on /nk-response)"
    )
    p.add_argument("--dataset", default=DEMO_NAME, help="dataset name or bundle path")
    for flag in ("--tumor-type", "--treatment", "--cohort"):
        p.add_argument(
            flag, nargs="+", action="extend", default=[], metavar="VALUE",
            help="keep only these values (repeatable)",
        )  # fmt: skip
    p.add_argument("--timepoint", default="pre", choices=["pre", "on", "post"])
    p.add_argument(
        "--metric",
        default=None,
        help="frac_nk | nk_lymphocytes | nk_over_nk_cd8 | log2_nk_cd8 | "
        "log2_nk_cd8_pseudo (when some NK or CD8 is 0) | score_* "
        "(default: nk_lymphocytes when available)",
    )
    p.add_argument(
        "--response",
        default=None,
        choices=["objective", "benefit", "recist", "reported"],
        help="response definition (default: objective, or reported without RECIST)",
    )
    p.add_argument("--split", default="median", choices=["median", "tertile"])
    p.add_argument(
        "--landmark",
        type=float,
        default=None,
        metavar="MONTHS",
        help="survival from this many months after treatment start, among patients "
        "still event-free and followed then (needed for survival by on/post NK)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (see README)")
    p.set_defaults(func=cmd_stats)


# --------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    """Re-render the figures of an export-all from its settings.json, headless."""
    import json

    from data.errors import Problem
    from data.view import cohort_view
    from figures.export import export_pages, parse_settings_document

    source = Path(args.settings)
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(
            Problem(
                file=source.name,
                message=f"cannot be read as JSON ({err}).",
                fix="pass the settings.json from an 'Export all' zip.",
            )
        ) from None
    document = parse_settings_document(document)
    if args.format or args.preset:
        document["export"] = dict(
            document["export"],
            **{
                k: v for k, v in (("format", args.format), ("preset", args.preset)) if v
            },
        )
        document = parse_settings_document(document)
    settings = get_settings()
    data_dir = _data_dir(args)
    # the filter of a hand-edited settings.json is checked like a command-line one
    flt = resolve_cli_filter(
        document["filter"],
        data_dir=data_dir,
        default_dataset=str(document.get("dataset") or settings.default_dataset),
        flags={key: f"filter `{key}`" for key in document["filter"]},
        source=source.name,
    )
    view = cohort_view(flt, data_dir=data_dir, default_dataset=flt.dataset)
    out = Path(args.out)

    def write(name: str, data: bytes) -> None:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def progress(done: int, total: int, what: str) -> None:
        if done < total and not args.quiet:
            print(f"[{done + 1}/{total}] {what}", file=sys.stderr)

    manifest = export_pages(view, document, write, progress=progress)
    figures = sum(1 for entry in manifest if entry.get("figure"))
    print(f"{figures} figure(s) and {len(manifest)} table(s) written to {out}")
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="re-render an export-all from its settings.json (figures, CSVs)",
    )
    p.add_argument("--settings", required=True, help="settings.json of an export")
    p.add_argument("--out", required=True, help="folder to write the files into")
    p.add_argument("--format", choices=("png", "svg", "pdf"), help="override")
    p.add_argument(
        "--preset", choices=("slide", "single", "double", "custom"), help="override"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_export)


# ----------------------------------------------------------------------------- main

#: Each entry adds one sub-command to the parser.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_demo,
    add_validate,
    add_add_user,
    add_import,
    add_prepare,
    add_stats,
    add_export,
]


def _analysis_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    # imported late: cli_analyses imports this module's helpers
    from cli_analyses import add_de, add_evidence, add_mechanism

    return [add_mechanism, add_de, add_evidence]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python cli.py", description="ICB Cohort Explorer command line"
    )
    parser.add_argument(
        "--data-dir", help="folder of dataset bundles (default DATA_DIR)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in [*COMMANDS, *_analysis_commands()]:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, SettingsError) as err:
        print(f"ERROR {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
