"""Gene programs of the Song et al. mechanism: scored per cell, rolled up per patient.

Song et al. (Cancer Discovery 2025): tumor NK cells compete with CD8 T cells for
IFN-alpha and IL-2 and so hold back a RARA-dependent program that drives CD8 T cells
toward the CD69+ BCL2+ EOMES+ GZMB+ TIM3- GITR- state. The programs scored here are
public gene sets (vendored in ``data/genesets`` with their attribution):

* IFN-alpha response and IL-2/STAT5 signalling (MSigDB Hallmark 7.5.1);
* retinoic-acid (RAR) targets (MSigDB DELACROIX_RAR_TARGETS_UP): **derived from mouse
  embryonic fibroblasts, not from T cells** - a generic RA response proxy;
* IFN-gamma response (Hallmark), a contrast: the paper's cytokines are IFN-alpha and
  IL-2, not IFN-gamma.

Scoring rule (documented in the README, tested against scanpy called directly): the
six gate markers (CD69, BCL2, EOMES, GZMB, HAVCR2, TNFRSF18) are removed from every
program *and* from the pool of control genes, because the IL-2/STAT5 set contains
BCL2, EOMES and TNFRSF18 itself and "gate+ cells have a higher IL-2 program" would
otherwise be circular. A program with fewer than :data:`MIN_GENES` genes present is
refused (not scored). Each remaining program is scored with
``scanpy.tl.score_genes`` (Satija et al. 2015 / Tirosh et al. 2016 module score: mean
log-normalized expression of the program's genes minus the mean of ``ctrl_size``
control genes drawn from the same expression bins, ``n_bins`` bins, seed
:data:`SEED`), on all cells of the file at once, when the bundle is prepared or
imported - never in a request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from data import schema

GENESET_DIR = Path(__file__).resolve().parents[1] / "data" / "genesets"
#: The six markers of the Song et al. CD8 gate: never part of a program score.
GATE_MARKERS: tuple[str, ...] = tuple(gene for gene, _, _ in schema.SONG_GATE)
#: A program with fewer genes present (after removing gate markers) is not scored.
MIN_GENES = 10
SEED = 0
CTRL_SIZE = 50
N_BINS = 25
#: obs column prefix of per-cell program scores and uns key of their description.
OBS_PREFIX = "program_"
UNS_KEY = "icb_programs"
RULE = (
    "scanpy.tl.score_genes (ctrl_size=50, n_bins=25, random_state=0) on "
    "log-normalized expression of all cells of the file; the six gate markers are "
    "removed from every program and from the control-gene pool; programs with "
    "fewer than 10 genes present are not scored"
)
MSIGDB_ATTRIBUTION = (
    "MSigDB gene sets, release 7.5.1, Copyright (c) 2004-2023 Broad Institute, Inc., "
    "Massachusetts Institute of Technology, and Regents of the University of "
    "California, licensed under CC BY 4.0 (Liberzon et al., Cell Syst 2015)"
)


@dataclass(frozen=True)
class Program:
    """A gene program: its vendored gene set and how to describe it.

    Attributes
    ----------
    key
        Stable id (URL value, ``obs`` column suffix).
    label
        Name on figures ("IFN-alpha response").
    file
        Gene-set file in ``data/genesets``.
    source
        Set name and origin, for captions and exports.
    t_cell_derived
        False for every set here; the RA set's caveat is shown wherever it is.
    caveat
        Shown next to the program wherever it appears ("" for none).
    role
        ``"chain"`` (a step of the mechanism) or ``"contrast"``.
    """

    key: str
    label: str
    file: str
    source: str
    t_cell_derived: bool = False
    caveat: str = ""
    role: str = "chain"

    @property
    def column(self) -> str:
        return OBS_PREFIX + self.key

    def genes(self) -> tuple[str, ...]:
        """The set's genes in source order (as vendored, gate markers included)."""
        return read_gene_set(self.file)


RA_CAVEAT = (
    "not derived from T cells: RAR targets up-regulated by retinoic acid in mouse "
    "embryonic fibroblasts (a generic RA-response proxy)"
)
PROGRAMS: tuple[Program, ...] = (
    Program(
        "ifna",
        "IFN-alpha response",
        "HALLMARK_INTERFERON_ALPHA_RESPONSE.txt",
        "MSigDB Hallmark INTERFERON_ALPHA_RESPONSE (v7.5.1, CC BY 4.0)",
    ),
    Program(
        "il2",
        "IL-2/STAT5 signalling",
        "HALLMARK_IL2_STAT5_SIGNALING.txt",
        "MSigDB Hallmark IL2_STAT5_SIGNALING (v7.5.1, CC BY 4.0)",
    ),
    Program(
        "ra",
        "Retinoic-acid (RAR) targets",
        "DELACROIX_RAR_TARGETS_UP.txt",
        "MSigDB C2 DELACROIX_RAR_TARGETS_UP (M2464, v7.5.1, CC BY 4.0; Delacroix et "
        "al., Mol Cell Biol 2010)",
        caveat=RA_CAVEAT,
    ),
    Program(
        "ifng",
        "IFN-gamma response (contrast)",
        "HALLMARK_INTERFERON_GAMMA_RESPONSE.txt",
        "MSigDB Hallmark INTERFERON_GAMMA_RESPONSE (v7.5.1, CC BY 4.0)",
        caveat="a contrast: the paper's cytokines are IFN-alpha and IL-2; 73 of the "
        "97 IFN-alpha genes are also in this set",
        role="contrast",
    ),
)
PROGRAM_BY_KEY = {p.key: p for p in PROGRAMS}


@lru_cache(maxsize=16)
def read_gene_set(file: str) -> tuple[str, ...]:
    """Genes of a vendored gene-set file (one symbol per line)."""
    text = (GENESET_DIR / file).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@dataclass(frozen=True)
class Coverage:
    """Which genes of a program a dataset lets us use.

    Attributes
    ----------
    key
        Program key.
    total
        Genes in the set.
    removed
        Gate markers of the set, removed before scoring (whether present or not).
    missing
        Genes of the set (other than gate markers) absent from the dataset.
    used
        Genes scored, in dataset spelling.
    scored
        False when fewer than :data:`MIN_GENES` genes are present.
    """

    key: str
    total: int
    removed: tuple[str, ...]
    missing: tuple[str, ...]
    used: tuple[str, ...]
    scored: bool

    @property
    def found(self) -> int:
        return len(self.used)

    @property
    def text(self) -> str:
        """``"41 / 97 genes found (gate markers removed: none)"``."""
        removed = ", ".join(self.removed) or "none"
        out = (
            f"{self.found} / {self.total} genes found (gate markers removed: {removed})"
        )
        if not self.scored:
            out += f"; not scored: fewer than {MIN_GENES} genes present"
        return out

    def to_dict(self) -> dict:
        out = asdict(self)
        out["found"] = self.found
        return out


def coverage(program: Program, var_names: Sequence[str] | pd.Index) -> Coverage:
    """Genes of ``program`` usable in a dataset with genes ``var_names``.

    Matching ignores case (``Isg15`` is ``ISG15``); gate markers are removed whatever
    their spelling.
    """
    by_fold: dict[str, str] = {}
    for name in map(str, var_names):
        by_fold.setdefault(name.casefold(), name)
    gate = {g.casefold() for g in GATE_MARKERS}
    genes = program.genes()
    removed = tuple(g for g in genes if g.casefold() in gate)
    kept = [g for g in genes if g.casefold() not in gate]
    used = tuple(by_fold[g.casefold()] for g in kept if g.casefold() in by_fold)
    missing = tuple(g for g in kept if g.casefold() not in by_fold)
    return Coverage(
        key=program.key,
        total=len(genes),
        removed=removed,
        missing=missing,
        used=used,
        scored=len(used) >= MIN_GENES,
    )


def control_pool(var_names: Sequence[str] | pd.Index) -> list[str]:
    """Genes control genes may be drawn from: every gene but the gate markers."""
    gate = {g.casefold() for g in GATE_MARKERS}
    return [str(g) for g in var_names if str(g).casefold() not in gate]


@dataclass(frozen=True)
class ProgramScores:
    """What :func:`score_programs` did, stored as JSON in ``uns[UNS_KEY]``."""

    rule: str = RULE
    coverage: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"rule": self.rule, "coverage": self.coverage})

    @classmethod
    def from_json(cls, text: str) -> ProgramScores:
        data = json.loads(text)
        return cls(rule=data["rule"], coverage=data["coverage"])


def score_programs(
    adata,
    *,
    programs: Sequence[Program] = PROGRAMS,
    seed: int = SEED,
    progress: Callable[[str], None] = print,
) -> ProgramScores:
    """Score each program in every cell of ``adata`` (in place).

    Adds ``obs['program_<key>']`` (float32) for every program with at least
    :data:`MIN_GENES` genes present, removes the columns of programs that cannot be
    scored (a stale score must not survive a re-import), and stores the coverage as
    JSON in ``uns['icb_programs']``.

    Parameters
    ----------
    adata
        AnnData with log-normalized expression in ``X`` and gene symbols as
        ``var_names``. Modified in place: pass a copy you own.
    programs
        Programs to score (default: all of :data:`PROGRAMS`).
    seed
        ``random_state`` of ``scanpy.tl.score_genes`` (control-gene draw).

    Returns
    -------
    ProgramScores
        The rule and, per program, the :class:`Coverage` as a dict.
    """
    import scanpy as sc

    pool = control_pool(adata.var_names)
    result: dict[str, dict] = {}
    for program in programs:
        cov = coverage(program, adata.var_names)
        result[program.key] = cov.to_dict()
        if not cov.scored:
            if program.column in adata.obs.columns:
                del adata.obs[program.column]
            progress(f"  {program.label}: not scored ({cov.text})")
            continue
        progress(f"  {program.label}: {cov.text}")
        sc.tl.score_genes(
            adata,
            list(cov.used),
            ctrl_size=CTRL_SIZE,
            n_bins=N_BINS,
            gene_pool=pool,
            score_name=program.column,
            random_state=seed,
            use_raw=False,
        )
        adata.obs[program.column] = adata.obs[program.column].astype(np.float32)
    scores = ProgramScores(coverage=result)
    adata.uns[UNS_KEY] = scores.to_json()
    return scores


@lru_cache(maxsize=8)
def _read_scores_meta(path: str, _mtime_ns: int, _size: int) -> ProgramScores | None:
    import h5py

    with h5py.File(path, "r") as handle:
        if "uns" not in handle or UNS_KEY not in handle["uns"]:
            return None
        value = handle["uns"][UNS_KEY][()]
    text = value.decode() if isinstance(value, bytes) else str(value)
    return ProgramScores.from_json(text)


def read_scores_meta(path: Path | str) -> ProgramScores | None:
    """The :class:`ProgramScores` stored in an h5ad, ``None`` when it has none."""
    path = Path(path)
    stat = path.stat()
    return _read_scores_meta(str(path), stat.st_mtime_ns, stat.st_size)


# -------------------------------------------------------------- patient roll-up
def patient_means(
    values: np.ndarray, patient_codes: np.ndarray, n_patients: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` over each patient's cells, and the number of cells used.

    NaN values are skipped; a patient without cells gets NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    codes = np.asarray(patient_codes)
    ok = np.isfinite(values) & (codes >= 0)
    n = np.bincount(codes[ok], minlength=n_patients)[:n_patients]
    total = np.bincount(codes[ok], weights=values[ok], minlength=n_patients)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total[:n_patients] / np.maximum(n, 1), np.nan)
    return mean, n.astype(np.int64)


def patient_program_table(
    obs_values: dict[str, np.ndarray],
    patient_codes: np.ndarray,
    patients: pd.DataFrame,
    in_gate: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per patient: each program's mean over all, gate+ and gate- CD8 cells.

    Parameters
    ----------
    obs_values
        Program key -> score of each cell (same cells as ``patient_codes``).
    patient_codes
        Row of ``patients`` of each cell.
    patients
        One row per patient (kept as the first columns of the result).
    in_gate
        Gate membership of each cell; adds ``<key>_gate_pos`` / ``<key>_gate_neg``,
        ``n_gate_pos`` and ``gate_fraction``.

    Returns
    -------
    DataFrame
        ``patients`` plus ``<key>`` (mean over all the patient's cells) per program.
    """
    table = patients.copy().reset_index(drop=True)
    n_patients = len(table)
    for key, values in obs_values.items():
        table[key], _ = patient_means(values, patient_codes, n_patients)
    if in_gate is not None:
        gate = np.asarray(in_gate, dtype=bool)
        codes = np.asarray(patient_codes)
        n_all = np.bincount(codes[codes >= 0], minlength=n_patients)[:n_patients]
        n_pos = np.bincount(codes[gate & (codes >= 0)], minlength=n_patients)
        table["n_gate_pos"] = n_pos[:n_patients].astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            table["gate_fraction"] = np.where(
                n_all > 0, table["n_gate_pos"] / np.maximum(n_all, 1), np.nan
            )
        for key, values in obs_values.items():
            pos = np.where(gate, values, np.nan)
            neg = np.where(gate, np.nan, values)
            table[f"{key}_gate_pos"], _ = patient_means(pos, codes, n_patients)
            table[f"{key}_gate_neg"], _ = patient_means(neg, codes, n_patients)
    return table


# ----------------------------------------------------------------- bulk cohorts
#: ``score_*`` column prefix of per-sample program scores of bulk expression.
BULK_PREFIX = "score_program_"


def bulk_program_scores(
    expression: pd.DataFrame,
) -> tuple[pd.DataFrame, list[str]]:
    """Program scores per sample of a bulk expression matrix, and notes.

    The project's documented bulk rule (:func:`data.signatures.signature_scores`:
    mean z-score across the import's samples) on each program's genes with the gate
    markers removed; a program with fewer than :data:`MIN_GENES` varying genes
    present is not scored (and a note says so).

    Parameters
    ----------
    expression
        Genes x samples, log scale, gene symbols as index.

    Returns
    -------
    scores, notes
        Samples x ``score_program_<key>`` columns, and one note per program.
    """
    from data.signatures import Signature, signature_scores

    out = pd.DataFrame(index=expression.columns.astype(str))
    notes = []
    for program in PROGRAMS:
        cov = coverage(program, expression.index)
        signature = Signature(BULK_PREFIX + program.key, cov.used, program.source)
        scores, used, _ = signature_scores(expression, signature)
        removed = ", ".join(cov.removed) or "none"
        text = (
            f"{signature.column}: {program.label}, {len(used)} / {cov.total} genes "
            f"used (gate markers removed: {removed})"
        )
        if len(used) < MIN_GENES:
            notes.append(text + f"; NOT scored: fewer than {MIN_GENES} genes.")
            continue
        out[signature.column] = scores.to_numpy()
        caveat = f"; {program.caveat}" if program.caveat else ""
        notes.append(text + f". Source: {program.source}{caveat}.")
    return out, notes
