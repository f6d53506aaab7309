"""Benchmark suite: ``python -m bench.run [--quick]`` (``make bench``, ``bench-quick``).

Prints a Markdown table and writes ``bench/results/<UTC date-time>.json``. Every
figure is the median of ``--runs`` (default 5) timed runs after one warm-up. The app
is measured the way a browser meets it: served by gunicorn in a subprocess, callbacks
POSTed to ``/_dash-update-component`` on loopback, time = request sent to last byte
received (so it bounds the server time from above: callback, JSON encoding,
compression), bytes = the response body raw and as sent with
``Accept-Encoding: gzip, deflate, br``. Side by side, in the same run: the naive
reference (``bench/naive_app.py``) and CELLxGENE when installed
(``bench/cellxgene_ref.py``).

Bundles are generated once into ``bench/data/`` (git-ignored) with
``python cli.py demo``; the full run needs ~10 minutes and ~6 GB RAM to make the
10^6-cell bundle the first time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import cellxgene_ref
from bench.harness import Row, machine, markdown_table, timed, timed_each, write_json
from bench.server import (
    AppServer,
    callback_payload,
    figure_points,
    find_callback,
    layout_values,
    response_outputs,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
FILTER = ("shell-filter", "data")
NAIVE = "naive"
CXG = "CELLxGENE"
#: genes read one per run (never cached): marker genes, then filler genes
COLD_GENES = ["GZMK", "CCR7", "TOX", "PDCD1", "MKI67", "ITGAE", "SELL", "LAG3"]

#: bundle name -> arguments of `cli.py demo`
BUNDLES = {
    "demo": [],
    "cells-10k": ["--cells", "10000", "--genes", "2000"],
    "cells-100k": [
        "--cells", "100000", "--genes", "2000", "--cell-patients", "200",
        "--umap-subsample", "50000",
    ],
    "cells-1m": [
        "--cells", "1000000", "--genes", "2000", "--cell-patients", "200",
        "--umap-subsample", "50000",
    ],
    "patients-10k": ["--cells", "0", "--patients", "10000"],
}  # fmt: skip
N_CELLS = {"cells-10k": 10_000, "cells-100k": 100_000, "cells-1m": 1_000_000}


@dataclass
class Plan:
    """What a run measures."""

    quick: bool
    runs: int
    sizes: list[str]
    big: str
    naive: bool
    cellxgene: bool
    export: bool
    #: only the export rows (``--export-only``)
    export_only: bool = False

    @property
    def big_label(self) -> str:
        return _label(self.big)


def _label(bundle: str) -> str:
    return {"cells-10k": "10k", "cells-100k": "100k", "cells-1m": "1M"}.get(
        bundle, bundle
    )


def ensure_bundles(names: list[str], log: Callable[[str], None]) -> None:
    """Generate the missing bundles with ``cli.py demo`` (once; reused after)."""
    for name in names:
        if (DATA / name / "dataset.json").exists():
            continue
        log(f"generating bench bundle {name} (one time) ...")
        cmd = [PY, "cli.py", "demo", "--out", str(DATA / name), *BUNDLES[name]]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def _app_values():
    """Initial property values of the pages, from their layout functions."""
    import logging

    os.environ.setdefault("DATA_DIR", str(DATA))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import app  # noqa: F401  (registers the pages)

    for name in ("kaleido", "choreographer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from pages import cd8_states, nk_response

    return (
        layout_values(cd8_states.layout()),
        layout_values(nk_response.layout()),
        cd8_states,
        nk_response,
    )


class Bench:
    def __init__(self, plan: Plan, log: Callable[[str], None] = print):
        self.plan = plan
        self.rows: list[Row] = []
        self.log = log
        self.cd8_values, self.nk_values, self.cd8, self.nk = _app_values()
        self._cache_dirs: list[Path] = []

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        self.log(f"  {row.section}: {row.name} = {row.value} {row.unit}")
        return row

    def row(self, section: str, name: str) -> Row | None:
        for row in self.rows:
            if row.section == section and row.name == name:
                return row
        return None

    def server(self, **env: str) -> AppServer:
        """The app in gunicorn with an empty private cache directory.

        The app caches built panels in a shared filesystem cache; each server gets a
        fresh one so start-up and first answers are measured cold, never as cache hits.
        """
        cache_dir = Path(tempfile.mkdtemp(prefix="icb-bench-cache-"))
        env = {
            "DATA_DIR": str(DATA),
            "DEFAULT_DATASET": "demo",
            "CACHE_DIR": str(cache_dir),
            **env,
        }
        srv = AppServer("app", env=env)
        srv.cache_dir = cache_dir
        self._cache_dirs.append(cache_dir)
        return srv

    @staticmethod
    def clear_cache(srv: AppServer) -> None:
        """Empty the server's panel cache (the next answer is computed)."""
        for path in srv.cache_dir.rglob("*"):
            if path.is_file():
                path.unlink()

    # ----------------------------------------------------------- start-up
    def startup(self, dataset: str, *, also_umap: bool) -> None:
        runs = self.plan.runs
        ready, first, umap = [], [], []
        for i in range(runs + 1):
            with self.server(DEFAULT_DATASET=dataset) as srv:
                t_ready = srv.wait_ready("/")
                deps = srv.dependencies()
                dep = find_callback(deps, "overview-patients.children")
                values = {FILTER: {}}
                answer = srv.post(callback_payload(dep, values))
                assert answer.status == 200, answer.status
                t_first = time.perf_counter() - srv.started_at
                t_umap = None
                if also_umap:
                    answer = self._umap(srv, deps, {})
                    t_umap = time.perf_counter() - srv.started_at
            if i == 0:
                continue  # warm-up: OS file cache, byte-compiled modules
            ready.append(t_ready)
            first.append(t_first)
            if t_umap is not None:
                umap.append(t_umap)
        label = _label(dataset)
        self.add(
            Row(
                "start-up",
                f"{label}: process start to GET / answered",
                statistics.median(ready),
                "s",
                samples=ready,
                runs=runs,
                note="gunicorn, 1 worker",
            )
        )
        self.add(
            Row(
                "start-up",
                f"{label}: to first page served (overview callback answered)",
                statistics.median(first),
                "s",
                target=("<", 3.0) if dataset == "cells-1m" else None,
                samples=first,
                runs=runs,
                note="loads + validates the bundle; empty panel cache",
            )
        )
        if umap:
            self.add(
                Row(
                    "start-up",
                    f"{label}: to CD8 UMAP answered (cold worker)",
                    statistics.median(umap),
                    "s",
                    samples=umap,
                    runs=runs,
                )
            )

    # --------------------------------------------------------- CD8 page
    def _umap_dep(self, deps):
        return find_callback(deps, f"{self.cd8.UMAP}.figure")

    def _umap(self, srv, deps, overrides, *, filter_data=None, changed=None):
        values = dict(self.cd8_values)
        values[FILTER] = filter_data if filter_data is not None else {}
        values.update(overrides)
        return srv.post(callback_payload(self._umap_dep(deps), values, changed=changed))

    def cd8_umap(self, srv: AppServer, dataset: str, *, tag: str = "") -> None:
        """First render and recolours of the UMAP for ``dataset``."""
        deps = srv.dependencies()
        flt = {"dataset": dataset}
        cd8 = self.cd8
        label = _label(dataset) + tag
        # the 1M targets are held by the run that draws every cell
        is_big = dataset == "cells-1m" and "all points" in tag
        answers = []

        def render():
            answer = self._umap(srv, deps, {}, filter_data=flt)
            assert answer.status == 200, answer.status
            answers.append(answer)
            return answer

        cold = render()  # first render in this worker: reads the bundle
        med, samples, last = timed(render, runs=self.plan.runs, warmup=0)
        outputs = response_outputs(last.body)
        figure = outputs[f"{cd8.UMAP}.figure"]
        points = figure_points(figure)
        signature = outputs[f"{cd8.DRAWN}.data"]
        n_cells = N_CELLS.get(dataset, points)
        wire = statistics.median(a.wire_bytes for a in answers[1:])
        raw = statistics.median(a.raw_bytes for a in answers[1:])
        note = f"{points:,} of {n_cells:,} cells drawn; {last.encoding}"
        self.add(
            Row(
                "UMAP first render",
                f"{label}: server time",
                med,
                "ms",
                target=("<", 100.0) if is_big else None,
                samples=samples,
                runs=self.plan.runs,
                note=note + f"; cold (first in worker) {cold.ms:,.0f} ms",
            )
        )
        self.add(
            Row(
                "UMAP first render",
                f"{label}: bytes per point on the wire",
                wire / points,
                "B",
                target=("<=", 6.0) if is_big else None,
                note=f"{raw / points:.2f} B/point raw JSON; {note}",
            )
        )
        # recolours: Patch answers to a figure already drawn
        drawn = {(cd8.DRAWN, "data"): signature}

        def recolour(section_name, overrides, changed, genes=None):
            answers = []

            def call(extra=None):
                answer = self._umap(
                    srv,
                    deps,
                    {**drawn, **overrides, **(extra or {})},
                    filter_data=flt,
                    changed=changed,
                )
                assert answer.status == 200, (answer.status, section_name)
                answers.append(answer)
                return answer

            if genes:  # a different gene each run: nothing cached
                med, samples = timed_each(
                    [lambda g=g: call({(cd8.GENE, "value"): g}) for g in genes[1:]],
                    warmup=lambda: call({(cd8.GENE, "value"): genes[0]}),
                )
            else:
                med, samples, _ = timed(call, runs=self.plan.runs, warmup=1)
            wire = statistics.median(a.wire_bytes for a in answers[1:])
            raw = statistics.median(a.raw_bytes for a in answers[1:])
            self.add(
                Row(
                    "recolour",
                    f"{label}: {section_name}: server time",
                    med,
                    "ms",
                    target=("<", 80.0) if is_big else None,
                    samples=samples,
                    runs=len(samples),
                )
            )
            self.add(
                Row(
                    "recolour",
                    f"{label}: {section_name}: bytes per point on the wire",
                    wire / points,
                    "B",
                    target=("<=", 1.5) if is_big else None,
                    note=f"{raw / points:.2f} B/point raw; Patch of "
                    f"{points:,} points; {answers[-1].encoding}",
                )
            )

        genes = COLD_GENES[: self.plan.runs + 1]
        recolour(
            "by gene",
            {(cd8.COLOR, "value"): "gene"},
            f"{cd8.GENE}.value",
            genes=genes,
        )
        recolour("by gate", {(cd8.COLOR, "value"): "gate"}, f"{cd8.COLOR}.value")
        recolour(
            "by category (patient)",
            {(cd8.COLOR, "value"): "patient"},
            f"{cd8.COLOR}.value",
        )

    def cd8_gate_views(self, srv: AppServer, dataset: str) -> None:
        deps = srv.dependencies()
        dep = find_callback(deps, f"{self.cd8.HIST}.figure")
        values = dict(self.cd8_values)
        values[FILTER] = {"dataset": dataset}

        def call():
            answer = srv.post(callback_payload(dep, values))
            assert answer.status == 200
            return answer

        med, samples, _ = timed(call, runs=self.plan.runs, warmup=1)
        self.add(
            Row(
                "gate",
                f"{_label(dataset)}: CD8 gate-statistics callback (HTTP)",
                med,
                "ms",
                samples=samples,
                runs=self.plan.runs,
                note="histograms, per-patient box, NK scatter, threshold sensitivity",
            )
        )

    # --------------------------------------------------------------- NK page
    def nk_stats(self, srv: AppServer, dataset: str, n_patients: str) -> None:
        deps = srv.dependencies()
        dep = find_callback(deps, f"{self.nk.METRIC}.options")
        values = dict(self.nk_values)
        values[FILTER] = {"dataset": dataset}

        answers = []

        def call():
            answer = srv.post(callback_payload(dep, values))
            assert answer.status == 200, answer.status
            answers.append(answer)
            return answer

        def computed():
            self.clear_cache(srv)  # the page caches its panels: time the work
            return call()

        med, samples, last = timed(computed, runs=self.plan.runs, warmup=1)
        cached, _, _ = timed(call, runs=self.plan.runs, warmup=1)
        self.add(
            Row(
                "NK statistics",
                f"{dataset} ({n_patients} patients): NK page callback",
                med,
                "ms",
                samples=samples,
                runs=self.plan.runs,
                note=f"all NK panels and tests computed (cache emptied before each "
                f"run; {cached:,.0f} ms when another user's request already "
                f"cached the view); {last.wire_bytes / 1024:,.0f} KB on the wire",
            )
        )

    # ------------------------------------------------------------- in-process
    def gene_read(self, dataset: str) -> None:
        from data.cells import CellStore

        path = DATA / dataset / "cd8_cells.h5ad"
        store = CellStore(path)  # fresh store: empty gene cache
        genes = COLD_GENES[: self.plan.runs + 1]
        med, samples = timed_each(
            [lambda g=g: store.gene(g) for g in genes[1:]],
            warmup=lambda: store.gene(genes[0]),
        )
        self.add(
            Row(
                "one gene",
                f"{_label(dataset)}: read one gene for all cells",
                med,
                "ms",
                target=("<", 200.0) if dataset == "cells-1m" else None,
                samples=samples,
                runs=len(samples),
                note="a different gene each run (not cached); gene-major copy "
                + ("present" if store.gene_major else "ABSENT")
                + "; OS file cache warm",
            )
        )

    def evidence_multiverse(self, dataset: str = "demo") -> None:
        """Issue 17: every specification of the evidence page's multiverse, pooled
        (in process; the bundle already loaded, the per-view cache emptied)."""
        from analysis.evidence_view import evidence
        from analysis.multiverse import _multiverse_cached, multiverse

        evidence([dataset], DATA)  # load the bundle once, as a running app has
        specs: list = []

        def cold():
            _multiverse_cached.cache_clear()
            specs[:] = multiverse([dataset], DATA)

        med, samples, _ = timed(cold, runs=self.plan.runs, warmup=1)
        cached, _, _ = timed(lambda: multiverse([dataset], DATA), runs=5, warmup=1)
        self.add(
            Row(
                "evidence",
                f"{dataset}: multiverse of {len(specs)} specifications, pooled",
                med,
                "ms",
                target=("<", 2000.0),
                samples=samples,
                runs=self.plan.runs,
                note=f"estimator x denominator x definition x timepoint, REML + "
                f"Hartung-Knapp each; cache emptied before each run ({cached:.2f} ms "
                "for the same view again)",
            )
        )

    def gate_fractions(self, dataset: str) -> None:
        from analysis import gating
        from data.cells import CellStore

        path = DATA / dataset / "cd8_cells.h5ad"
        gate = gating.default_gate()
        stores = [CellStore(path) for _ in range(self.plan.runs + 1)]

        def run(store):
            obs = store.obs
            result = gating.evaluate_gate(
                gate, store.gene, available=store.var_names, n_cells=store.n_cells
            )
            codes = obs.groupby(["cohort", "patient_id"], observed=True).ngroup()
            n_patients = int(codes.max()) + 1
            return gating.patient_fractions(
                result.in_gate, codes.to_numpy(), n_patients
            )

        med, samples = timed_each(
            [lambda s=s: run(s) for s in stores[1:]], warmup=lambda: run(stores[0])
        )
        self.add(
            Row(
                "gate",
                f"{_label(dataset)}: evaluate gate + per-patient fractions",
                med,
                "ms",
                target=("<", 300.0) if dataset == "cells-1m" else None,
                samples=samples,
                runs=len(samples),
                note=f"{len(gate.markers)}-marker default gate, its genes read "
                "from disk in every run (fresh store)",
            )
        )
        store = stores[-1]
        med, samples, _ = timed(lambda: run(store), runs=self.plan.runs, warmup=1)
        self.add(
            Row(
                "gate",
                f"{_label(dataset)}: same, gate genes already in memory",
                med,
                "ms",
                samples=samples,
                runs=self.plan.runs,
            )
        )

    def export(self, *, everything: bool = True) -> None:
        from config import get_settings
        from data.view import cohort_view
        from figures import export as fx
        from figures.reports import PAGE_BUILDERS, build_panels

        if fx.browser_path() is None:
            self.add(Row("export", "PNG export", None, "s", note="no Chromium"))
            return
        view = cohort_view(
            {"dataset": "demo"},
            data_dir=DATA,
            default_dataset=get_settings().default_dataset,
        )
        settings = fx.ExportSettings()
        per_page = {}
        for page in PAGE_BUILDERS:
            panels = [p for p in build_panels(page, view, {}) if fx.has_figure(p)]
            per_page[page] = panels
        small = per_page["overview"][0]
        fx.export_figure(small, settings, page="overview")  # starts Kaleido
        med, samples, _ = timed(
            lambda: fx.export_figure(small, settings, page="overview"),
            runs=self.plan.runs,
            warmup=1,
        )
        self.add(
            Row(
                "export",
                f"PNG, small figure ({small.title}), warm",
                med / 1000.0,
                "s",
                target=("<", 0.5),
                samples=samples,
                runs=self.plan.runs,
                note="slide preset; Kaleido already started",
            )
        )
        if not everything:
            return
        png = self.export_each(view, per_page)
        for page, panels in per_page.items():
            medians = {panel.title: png[(page, panel.key)] for panel in panels}
            slowest = max(medians, key=medians.get)
            self.add(
                Row(
                    "export",
                    f"PNG, {page}: median over its {len(panels)} figures",
                    statistics.median(medians.values()),
                    "s",
                    note=f"slowest: {slowest} {medians[slowest]:.2f} s",
                )
            )
        document = {
            "filter": {"dataset": "demo"},
            "pages": {page: {} for page in PAGE_BUILDERS},
            "export": {"format": "png"},
        }
        med, samples, last = timed(
            lambda: fx.export_zip(view, document), runs=self.plan.runs, warmup=1
        )
        n = sum(len(p) for p in per_page.values())
        self.add(
            Row(
                "export",
                f"export-all zip, PNG, demo ({n} figures + tables)",
                med / 1000.0,
                "s",
                samples=[s / 1000.0 for s in samples],
                runs=self.plan.runs,
                note=f"{len(last) / 1e6:.1f} MB zip",
            )
        )

    def export_each(self, view, per_page: dict) -> dict[tuple[str, str], float]:
        """Export time of every figure (PNG slide, SVG single column) and of
        export-all in SVG, warm (Chromium started, panels built once).

        Returns the PNG median (s) per ``(page, panel key)``.
        """
        png = {}
        from figures import export as fx
        from figures.reports import PAGE_BUILDERS

        formats = {
            "PNG slide": fx.ExportSettings(format="png", preset="slide"),
            "SVG single column": fx.ExportSettings(format="svg", preset="single"),
        }
        for page, panels in per_page.items():
            for panel in panels:
                for label, settings in formats.items():
                    med, samples, out = timed(
                        lambda p=panel, s=settings, page=page: fx.export_figure(
                            p, s, page=page
                        ),
                        runs=self.plan.runs,
                        warmup=1,
                    )
                    if label.startswith("PNG"):
                        png[(page, panel.key)] = med / 1000.0
                    self.add(
                        Row(
                            "export per figure",
                            f"{label}, {page}/{panel.key}",
                            med / 1000.0,
                            "s",
                            samples=[v / 1000.0 for v in samples],
                            runs=self.plan.runs,
                            note=f"{len(out.content) / 1e3:,.0f} kB",
                        )
                    )
        document = {
            "filter": {"dataset": "demo"},
            "pages": {page: {} for page in PAGE_BUILDERS},
            "export": {"format": "svg", "preset": "single"},
        }
        med, samples, last = timed(
            lambda: fx.export_zip(view, document), runs=self.plan.runs, warmup=1
        )
        n = sum(len(p) for p in per_page.values())
        self.add(
            Row(
                "export",
                f"export-all zip, SVG single column, demo ({n} figures + tables), warm",
                med / 1000.0,
                "s",
                samples=[v / 1000.0 for v in samples],
                runs=self.plan.runs,
                note=f"{len(last) / 1e6:.1f} MB zip; panels built in the job",
            )
        )
        return png

    # ------------------------------------------------------------ references
    def naive(self, dataset: str) -> None:
        path = DATA / dataset / "cd8_cells.h5ad"
        srv = AppServer("bench.naive_app", env={"NAIVE_H5AD": str(path)})
        label = _label(dataset)
        with srv:
            srv.wait_ready("/")
            dep = find_callback(srv.dependencies(), "naive-umap.figure")

            def measure(colours):
                answers = []

                def call(colour):
                    payload = callback_payload(dep, {("naive-color", "value"): colour})
                    answer = srv.post(payload)
                    assert answer.status == 200, answer.status
                    answers.append(answer)

                med, _ = timed_each(
                    [lambda c=c: call(c) for c in colours[1:]],
                    warmup=lambda: call(colours[0]),
                )
                points = figure_points(
                    response_outputs(answers[-1].body)["naive-umap.figure"]
                )
                wire = statistics.median(a.wire_bytes for a in answers[1:])
                return med, wire / points

            runs = self.plan.runs + 1
            render = measure(["cd8_state"] * runs)
            gene = measure(COLD_GENES[:runs])
            category = measure(["patient_id"] * runs)
        refs = {
            (f"{label}: server time", "UMAP first render"): render[0],
            (f"{label}: bytes per point on the wire", "UMAP first render"): render[1],
            (f"{label}: by gene: server time", "recolour"): gene[0],
            (f"{label}: by gene: bytes per point on the wire", "recolour"): gene[1],
            (f"{label}: by category (patient): server time", "recolour"): category[0],
            (
                f"{label}: by category (patient): bytes per point on the wire",
                "recolour",
            ): category[1],
        }
        self._attach(NAIVE, refs, tag=" (all points)")

    def _attach(self, reference: str, refs: dict, *, tag: str = "") -> None:
        for (name, section), value in refs.items():
            label, rest = name.split(":", 1)
            for candidate in (f"{label}{tag}:{rest}", name):
                row = self.row(section, candidate)
                if row is not None:
                    row.references[reference] = value
                    break
            else:
                self.log(f"  (no row for reference {reference}: {name})")

    def cellxgene(self, dataset: str) -> None:
        path = DATA / dataset / "cd8_cells.h5ad"
        label = _label(dataset)
        starts = []
        for i in range(self.plan.runs + 1):
            with cellxgene_ref.CellxgeneServer(path) as cx:
                elapsed = cx.wait_ready()
                if i > 0:
                    starts.append(elapsed)
                if i < self.plan.runs:
                    continue
                runs = self.plan.runs
                emb = [cx.embedding() for _ in range(runs + 1)][1:]
                cat = [cx.category("patient_id") for _ in range(runs + 1)][1:]
                gene = [cx.gene(g) for g in COLD_GENES[: runs + 1]][1:]
                rss = cx.peak_rss_mb()
        n = N_CELLS[dataset]

        def med(values, index):
            return statistics.median(v[index] for v in values)

        refs = {
            (f"{label}: to first page served (overview callback answered)", "start-up"):
                statistics.median(starts),
            (f"{label}: server time", "UMAP first render"): med(emb, 0),
            (f"{label}: bytes per point on the wire", "UMAP first render"):
                med(emb, 1) / n,
            (f"{label}: by category (patient): server time", "recolour"): med(cat, 0),
            (f"{label}: by category (patient): bytes per point on the wire",
             "recolour"): med(cat, 1) / n,
            (f"{label}: by gene: server time", "recolour"): med(gene, 0),
            (f"{label}: by gene: bytes per point on the wire", "recolour"):
                med(gene, 1) / n,
            (f"{label}: peak RSS of the worker", "memory"): rss,
        }  # fmt: skip
        self._attach(CXG, refs, tag=" (all points)")
        self.cxg_note = (
            f"CELLxGENE {dataset}: start {statistics.median(starts):.1f} s, "
            f"RSS {rss:,.0f} MB (its own process, whole h5ad in memory); its "
            "numbers are HTTP requests for the embedding, the patient_id category "
            "and one gene (flatbuffers), beside our callbacks that answer the same"
        )

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        plan = self.plan
        if plan.export_only:
            self.log("export only ...")
            self.cxg_note = ""
            self.export(everything=True)
            return
        big = plan.big
        self.log("start-up ...")
        self.startup("demo", also_umap=False)
        if not plan.quick:
            self.startup(big, also_umap=True)
            self.log(f"CD8 page with {big}, default point budget ...")
            with self.server(DEFAULT_DATASET=big) as srv:
                srv.wait_ready("/")
                self.cd8_umap(srv, big, tag=" (default budget)")
                self.cd8_gate_views(srv, big)
                self.add(
                    Row(
                        "memory",
                        f"{plan.big_label}: peak RSS of the worker",
                        srv.peak_rss_mb(),
                        "MB",
                        target=("<", 1024.0) if big == "cells-1m" else None,
                        note="VmHWM after start-up, UMAP, recolours and gate views "
                        "(default point budget)",
                    )
                )
        self.log("CD8 page, all points drawn; NK page ...")
        with self.server(MAX_POINTS="5000000") as srv:
            srv.wait_ready("/")
            for size in plan.sizes:
                self.cd8_umap(srv, size, tag=" (all points)")
            if plan.quick:
                self.cd8_gate_views(srv, big)
            self.nk_stats(srv, "demo", "480")
            if not plan.quick:
                self.nk_stats(srv, "patients-10k", "10,000")
            rss = srv.peak_rss_mb()
        served = ", ".join(
            plan.sizes + ["demo"] + ([] if plan.quick else ["patients-10k"])
        )
        self.add(
            Row(
                "memory",
                "peak RSS of the worker, all points drawn, every bundle served",
                rss,
                "MB",
                note=f"MAX_POINTS=5000000; bundles {served}",
            )
        )
        self.log("one gene, gate ...")
        self.gene_read(big)
        self.gate_fractions(big)
        self.log("mechanism page: prepare-time scoring, callback ...")  # issue 15
        from bench.mechanism import bench_mechanism

        for row in bench_mechanism(big, plan.runs, log=self.log):
            self.add(row)
        self.evidence_multiverse("demo")  # issue 17
        if plan.export:
            self.log("export ...")
            self.export(everything=not plan.quick)
        if plan.naive:
            for size in plan.sizes:
                self.log(f"naive reference {size} ...")
                self.naive(size)
        self.cxg_note = ""
        if plan.cellxgene:
            if cellxgene_ref.executable() is None:
                self.cxg_note = (
                    "CELLxGENE not installed: skipped (see bench/cellxgene_ref.py)"
                )
            else:
                self.log(f"CELLxGENE {big} ...")
                self.cellxgene(big)
        for path in self._cache_dirs:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10k cells only, start-up of the demo only, NK on the demo only, "
        "one figure exported (under 5 minutes)",
    )
    parser.add_argument(
        "--sizes",
        help="comma-separated cell bundles, largest last (default cells-10k,"
        "cells-100k,cells-1m; --quick: cells-10k)",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--no-cellxgene", action="store_true")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="only figure export: each figure (PNG, SVG) and export-all, warm",
    )
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/)")
    parser.add_argument(
        "--no-de", action="store_true", help="skip the PyDESeq2 timings (issue 16)"
    )
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5 (each figure is a median of >= 5)")
    sizes = ["cells-10k"] if args.quick else ["cells-10k", "cells-100k", "cells-1m"]
    if args.sizes:
        sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
        unknown = [s for s in sizes if s not in N_CELLS]
        if unknown:
            parser.error(f"unknown sizes {unknown}; choose from {', '.join(N_CELLS)}")
    plan = Plan(
        quick=args.quick,
        runs=args.runs,
        sizes=sizes,
        big=sizes[-1],
        naive=not args.no_naive,
        cellxgene=not args.no_cellxgene,
        export=not args.no_export,
        export_only=args.export_only,
    )
    started = time.perf_counter()
    load = os.getloadavg()[0]
    when = datetime.now(UTC)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    ensure_bundles(
        ["demo"] if args.export_only else ["demo", "patients-10k", *sizes], log
    )
    bench = Bench(plan, log)
    bench.run()
    de_rows = [] if args.no_de else de_timings(args.quick, log)
    references = [NAIVE] + (
        [CXG] if any(CXG in r.references for r in bench.rows) else []
    )
    table = markdown_table(bench.rows, references)
    command = (
        "python -m bench.run"
        + (" --quick" if args.quick else "")
        + (" --export-only" if args.export_only else "")
    )
    header = (
        f"Measured {when:%Y-%m-%d %H:%M} UTC with `{command}` "
        f"({'quick' if args.quick else 'full'} mode, median of {args.runs} runs "
        f"after a warm-up; {os.cpu_count()} CPUs, load average {load:.1f} at start; "
        f"run took {(time.perf_counter() - started) / 60:.1f} min). "
        "Ratio = reference / ours.\n"
    )
    if bench.cxg_note:
        header += f"{bench.cxg_note}.\n"
    print(header)
    print(table)
    if de_rows:
        print(de_table(de_rows))
    out = (
        args.out
        or RESULTS / f"{when:%Y-%m-%dT%H%M}{'-quick' if args.quick else ''}.json"
    )
    write_json(
        out,
        bench.rows,
        meta={
            "command": command,
            "date": when.isoformat(),
            "mode": "quick" if args.quick else "full",
            "runs": args.runs,
            "machine": machine(),
            "references": references,
            "notes": [bench.cxg_note] if bench.cxg_note else [],
            "table_markdown": table,
            "de_timings": de_rows,
        },
    )
    print(f"JSON: {out}", file=sys.stderr)
    return 0


def de_timings(quick: bool, log: Callable[[str], None]) -> list[dict]:
    """PyDESeq2 on 2,000 (and, unless quick, 20,000) genes x 100 pseudobulk samples,
    2 processes, as the /compare page's background job runs it (bench.de_bench)."""
    from bench.de_bench import deseq2_timings

    log("PyDESeq2 timings (pseudobulk DE)")
    sizes = [(2_000, 100)] if quick else [(2_000, 100), (20_000, 100)]
    return deseq2_timings(sizes, n_cpus=2, log=log)


def de_table(rows: list[dict]) -> str:
    """Markdown table of :func:`de_timings` (targets: 30 s and 3 min on 2 cores)."""
    lines = [
        "| PyDESeq2 | design | processes | seconds |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['genes']:,} genes x {row['samples']} samples | {row['design']} "
            f"| {row['n_cpus']} | {row['seconds']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
