"""Pseudobulk DE: recovery of the demo's simulated genes and PyDESeq2 timings.

``python -m bench.de_bench [--recovery] [--timing] [--cpus N]``

* **recovery** - on the demo bundle, for gate+ vs gate- cells (paired) and for
  responders vs non-responders (unpaired): precision and recall of the pseudobulk
  test's top 50 simulated genes against ``simulated.de_genes`` in ``dataset.json``,
  and the number of *null* simulated genes called significant (BH padj < 0.05) by
  the pseudobulk test and by a Welch t-test over cells on the same data (the test
  CELLxGENE-style viewers run; cells as samples). Only the simulated panel has a
  known truth: marker genes differ by construction and are left out of the counts.
* **timing** - PyDESeq2 as :func:`analysis.pseudobulk.run_deseq2` calls it, on a
  negative-binomial matrix of 2,000 genes x 100 pseudobulk samples and 20,000 x 100
  (50 patients x 2 sets, paired design ``~ patient + group``, and unpaired
  ``~ group``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TOP = 50
PADJ = 0.05
COMPARISONS = {"gate": ("gate", "not:gate"), "response": ("response:R", "response:NR")}


def cell_level_welch(view, a: str, b: str, genes) -> pd.DataFrame:
    """Welch t-test over cells (log-normalized expression), BH: the naive test."""
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    from analysis import cellsets
    from figures.de import cell_context

    ctx, _ = cell_context(view, "objective")
    mask_a = cellsets.evaluate_set(cellsets.parse_set(a), ctx)
    mask_b = cellsets.evaluate_set(cellsets.parse_set(b), ctx)
    values = np.column_stack([ctx.expression(g) for g in genes])
    test = stats.ttest_ind(values[mask_a], values[mask_b], axis=0, equal_var=False)
    p = np.nan_to_num(np.asarray(test.pvalue, float), nan=1.0)
    return pd.DataFrame(
        {"gene": list(genes), "pvalue": p, "padj": multipletests(p, method="fdr_bh")[1]}
    )


def recovery(view, truth: dict, key: str, *, n_cpus: int = 1) -> dict:
    """Precision / recall of the top 50 and false positives, for one comparison.

    Parameters
    ----------
    view
        The demo :class:`data.view.CohortView` (no filter).
    truth
        ``simulated`` of the demo's ``dataset.json``.
    key
        ``gate`` or ``response``.
    """
    from figures.de import Comparison, run_comparison

    a, b = COMPARISONS[key]
    started = time.perf_counter()
    result = run_comparison(view, Comparison(a=a, b=b), n_cpus=n_cpus)
    seconds = time.perf_counter() - started
    table = result.de.table
    panel = [g for g in table["gene"] if g.startswith("SIM")]
    true = set(truth["de_genes"][key])
    null = {g for g in panel if g not in true}
    top = set(panel[:TOP])
    significant = set(table.loc[table["padj"] < PADJ, "gene"])
    naive = cell_level_welch(view, a, b, panel)
    naive_significant = set(naive.loc[naive["padj"] < PADJ, "gene"])
    lfc = table.set_index("gene")["log2FC"]
    false_pb = sorted(significant & null)
    return {
        "comparison": f"{a} vs {b}",
        "design": result.de.design,
        "n_patients": result.de.n_patients,
        "seconds": round(seconds, 1),
        "n_simulated_tested": len(panel),
        "n_true": len(true),
        "n_null": len(null),
        "top": TOP,
        "precision_top": len(top & true) / TOP,
        "recall_top": len(top & true) / len(true),
        "pseudobulk_true_positives": len(significant & true),
        "pseudobulk_false_positives": len(false_pb),
        "pseudobulk_false_positive_max_abs_log2fc": round(
            float(lfc[false_pb].abs().max()) if false_pb else 0.0, 3
        ),
        "cell_level_true_positives": len(naive_significant & true),
        "cell_level_false_positives": len(naive_significant & null),
    }


def demo_recovery(n_cpus: int = 1) -> list[dict]:
    """:func:`recovery` for both comparisons on the demo in DATA_DIR."""
    from config import get_settings
    from data.view import cohort_view

    settings = get_settings()
    view = cohort_view({}, data_dir=settings.data_dir, default_dataset="demo")
    meta = json.loads((view.bundle.path / "dataset.json").read_text())
    if "simulated" not in meta:
        raise SystemExit(
            "the demo has no simulated DE genes: regenerate it (make demo or "
            "python cli.py demo)"
        )
    return [recovery(view, meta["simulated"], k, n_cpus=n_cpus) for k in COMPARISONS]


def synthetic_pseudobulk(
    n_genes: int, n_patients: int, *, paired: bool, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """NB counts for ``2 * n_patients`` samples (paired) or ``n_patients`` samples."""
    rng = np.random.default_rng(seed)
    n_samples = 2 * n_patients if paired else n_patients
    base = rng.lognormal(4.0, 1.5, n_genes)
    patient = rng.lognormal(0, 0.3, (n_patients, n_genes))
    codes = np.repeat(np.arange(n_patients), 2) if paired else np.arange(n_patients)
    group = (
        np.tile(["A", "B"], n_patients)
        if paired
        else np.repeat(["A", "B"], [n_patients // 2, n_patients - n_patients // 2])
    )
    mean = base[None, :] * patient[codes] * rng.lognormal(0, 0.1, (n_samples, 1))
    mean[group == "A", : n_genes // 20] *= 2.0
    counts = rng.poisson(rng.gamma(5.0, mean / 5.0))
    index = [f"s{i}" for i in range(n_samples)]
    meta = pd.DataFrame(
        {"group": group, "patient": [f"p{c}" for c in codes]}, index=index
    )
    frame = pd.DataFrame(counts, index=index, columns=[f"g{i}" for i in range(n_genes)])
    return frame, meta, "~ patient + group" if paired else "~ group"


def deseq2_timings(
    sizes=((2_000, 100), (20_000, 100)),
    *,
    n_cpus: int = 2,
    designs: tuple[bool, ...] = (True, False),
    log=print,
) -> list[dict]:
    """Seconds of :func:`analysis.pseudobulk.run_deseq2` per (genes, samples);
    ``designs``: paired (``True``) and/or unpaired (``False``)."""
    from analysis.pseudobulk import run_deseq2

    rows = []
    for n_genes, n_samples in sizes:
        for paired in designs:
            n_patients = n_samples // 2 if paired else n_samples
            counts, meta, design = synthetic_pseudobulk(
                n_genes, n_patients, paired=paired
            )
            log(f"  PyDESeq2 {n_genes:,} genes x {len(counts)} samples, {design}")
            started, cpu = time.perf_counter(), time.process_time()
            run_deseq2(counts, meta, design, n_cpus=n_cpus)
            rows.append(
                {
                    "genes": n_genes,
                    "samples": len(counts),
                    "design": design,
                    "n_cpus": n_cpus,
                    "seconds": round(time.perf_counter() - started, 1),
                    # load-independent with n_cpus=1 (PyDESeq2 then runs in this
                    # process); with more, the worker processes are not counted
                    "cpu_seconds_this_process": round(time.process_time() - cpu, 1),
                    "load_average_1min": round(os.getloadavg()[0], 1),
                }
            )
            log(f"    {rows[-1]['seconds']} s")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.de_bench", description=__doc__
    )
    parser.add_argument("--recovery", action="store_true", help="demo recovery only")
    parser.add_argument("--timing", action="store_true", help="PyDESeq2 timing only")
    parser.add_argument("--cpus", type=int, default=2, help="PyDESeq2 processes")
    parser.add_argument(
        "--sizes", default="2000x100,20000x100", help="GENESxSAMPLES,... for --timing"
    )
    parser.add_argument(
        "--design",
        choices=("both", "paired", "unpaired"),
        default="both",
        help="designs timed (paired: ~ patient + group; unpaired: ~ group)",
    )
    args = parser.parse_args(argv)
    both = not (args.recovery or args.timing)
    out: dict = {}
    if args.recovery or both:
        out["recovery"] = demo_recovery(n_cpus=args.cpus)
    if args.timing or both:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
        designs = {"both": (True, False), "paired": (True,), "unpaired": (False,)}
        out["deseq2_timing"] = deseq2_timings(
            sizes, n_cpus=args.cpus, designs=designs[args.design], log=log
        )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
