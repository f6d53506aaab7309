"""Benchmark of the mechanism page (issue 15): prepare-time scoring and the callback.

``python -m bench.mechanism --size cells-1m`` (also called from ``bench.run``):

* **prepare-time scoring**: the bench bundle's cells (made by ``cli.py demo`` with a
  fixed gene count, so without program genes) get the demo's program genes
  (``data.demo_mechanism``, per-patient NK bias drawn with a fixed seed), then
  :func:`analysis.programs.score_programs` is timed on all cells - the work
  ``cli.py prepare`` / import / demo do once per file;
* **callback**: the scored cells are written once as ``bench/data/<size>-mech`` and the
  mechanism page's panel builder (every number and figure of the page, no cache) is
  timed on a fresh view per run, the first call of a fresh process reported apart
  (it reads the gate genes and the gene-view genes from disk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench.harness import Row, timed

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"


def _label(size: str) -> str:
    return {"cells-10k": "10k", "cells-100k": "100k", "cells-1m": "1M"}.get(size, size)


def _with_program_genes(size: str):
    import anndata as ad

    from data.demo import SEED, SONG_STATE
    from data.demo_mechanism import add_program_genes

    adata = ad.read_h5ad(DATA / size / "cd8_cells.h5ad")
    keys = adata.obs[["cohort", "patient_id"]].drop_duplicates()
    rng = np.random.default_rng([SEED, 1515])
    patients = keys.assign(nk_bias=rng.normal(size=len(keys)))
    return add_program_genes(adata, patients, seed=SEED, song_state=SONG_STATE)


def scoring(size: str, runs: int, log=print) -> tuple[list[Row], object]:
    """Time :func:`score_programs` on every cell of ``size`` (with program genes)."""
    from analysis.programs import score_programs

    log(f"mechanism: adding program genes to {size} ...")
    adata = _with_program_genes(size)
    quiet = lambda _m: None  # noqa: E731
    med, samples, _ = timed(
        lambda: score_programs(adata, progress=quiet), runs=runs, warmup=0
    )
    row = Row(
        "mechanism",
        f"{_label(size)}: prepare-time program scoring (4 programs, all cells)",
        med / 1000.0,
        "s",
        note=f"scanpy.tl.score_genes x4 on {adata.n_obs:,} cells x {adata.n_vars:,} "
        "genes (once per file at prepare/import, never in a request)",
        runs=len(samples),
        samples=[s / 1000.0 for s in samples],
    )
    return [row], adata


def _write_bundle(size: str, adata) -> Path:
    from data.cells import write_gene_major

    out = DATA / f"{size}-mech"
    if (out / "dataset.json").exists():
        return out
    tmp = DATA / f".{size}-mech-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = json.loads((DATA / size / "dataset.json").read_text())
    meta["name"] = out.name
    (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.copy(DATA / size / "cohort.csv", tmp / "cohort.csv")
    adata.write_h5ad(tmp / "cd8_cells.h5ad")
    write_gene_major(tmp / "cd8_cells.h5ad")
    tmp.rename(out)
    return out


def callback(size: str, runs: int, adata=None, log=print) -> list[Row]:
    """Time the mechanism page's panels (uncached) on ``<size>-mech``."""
    import subprocess

    if not (DATA / f"{size}-mech" / "dataset.json").exists():
        if adata is None:
            adata = _with_program_genes(size)
            from analysis.programs import score_programs

            score_programs(adata, progress=lambda _m: None)
        log(f"mechanism: writing {size}-mech (one time) ...")
        _write_bundle(size, adata)
    # a fresh process: the first call reads from disk as a new worker would
    script = (
        "import json, time, statistics, os\n"
        "from data.view import cohort_view\n"
        "from figures.mechanism import mechanism_panels\n"
        f"name = '{size}-mech'\n"
        "from pathlib import Path\n"
        "view = lambda: cohort_view({'dataset': name}, data_dir=Path(os.environ['D']), "
        "default_dataset=name)\n"
        "t = time.perf_counter(); mechanism_panels(view(), {}); "
        "first = (time.perf_counter() - t) * 1000\n"
        "s = []\n"
        f"for _ in range({runs}):\n"
        "    t = time.perf_counter(); mechanism_panels(view(), {'program': 'il2'});"
        " s.append((time.perf_counter() - t) * 1000)\n"
        "print(json.dumps({'first': first, 'samples': s}))\n"
    )
    env = dict(os.environ, D=str(DATA), LOG_LEVEL="WARNING")
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"mechanism callback bench failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    samples = result["samples"]
    med = float(np.median(samples))
    return [
        Row(
            "mechanism",
            f"{_label(size)}: page callback (all five panels, no cache)",
            med,
            "ms",
            target=("<", 300.0) if size == "cells-1m" else None,
            note="scores precomputed; per-patient roll-up, gate, statistics, "
            "gene view and figures; same process, a fresh view per run",
            runs=len(samples),
            samples=samples,
        ),
        Row(
            "mechanism",
            f"{_label(size)}: first call of a fresh process",
            result["first"],
            "ms",
            note="reads obs, the gate genes and the gene-view genes from disk",
            runs=1,
            samples=[result["first"]],
        ),
    ]


def bench_mechanism(size: str, runs: int, log=print) -> list[Row]:
    """Both measurements for the bench bundle ``size``."""
    rows, adata = scoring(size, runs=min(runs, 3) if size == "cells-1m" else runs,
                          log=log)  # fmt: skip
    rows += callback(size, runs, adata=adata, log=log)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mechanism")
    parser.add_argument("--size", default="cells-10k")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    if not (DATA / args.size / "dataset.json").exists():
        from bench.run import ensure_bundles

        ensure_bundles([args.size], lambda m: print(m, file=sys.stderr))
    started = time.perf_counter()
    rows = bench_mechanism(
        args.size, args.runs, log=lambda m: print(m, file=sys.stderr)
    )
    print("| measurement | median | unit | target | runs |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.name} | {r.value:.3g} | {r.unit} | {r.status} | {r.runs} |")
    print(f"({time.perf_counter() - started:.0f} s, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
