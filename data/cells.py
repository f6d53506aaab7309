"""Single-cell data of a bundle: annotations read once, expression lazily.

A :class:`CellStore` holds ``obs`` and the 2-D embedding of ``cd8_cells.h5ad`` in memory
(small even at a million cells) and reads expression one gene at a time:

* **fast path** - a gene-major copy ``cd8_cells.genes.h5`` next to the h5ad (written by
  :func:`write_gene_major`, i.e. by ``cli.py demo`` and ``cli.py prepare``) stores the
  matrix column by column (CSC), so one gene is one contiguous slice of the file;
* **slower path** - without that copy (or when it no longer matches the h5ad) a dense
  ``X`` is read column-wise straight from the h5ad, and a sparse cell-major ``X`` is
  read whole once per process and kept as CSC in memory. That works, but costs the
  matrix's size in memory; run ``cli.py prepare`` to write the copy.

HDF5 files are opened per read, never at import and never held open across a fork, so
gunicorn workers each get their own handles.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from data import schema
from data.bundle import Bundle, read_cell_name, read_cell_obs

log = logging.getLogger(__name__)

#: File name of the gene-major expression copy, next to ``cd8_cells.h5ad``.
GENE_MAJOR_SUFFIX = ".genes.h5"
GENE_MAJOR_FORMAT = "icb-gene-major-csc"
GENE_MAJOR_VERSION = "1"
#: Genes kept in memory per store (float32: 4 MB per gene at a million cells).
GENE_CACHE_SIZE = 24


def gene_major_path(h5ad_path: Path | str) -> Path:
    """Path of the gene-major copy of ``h5ad_path`` (``cd8_cells.genes.h5``)."""
    h5ad_path = Path(h5ad_path)
    return h5ad_path.with_name(h5ad_path.stem + GENE_MAJOR_SUFFIX)


def _read_matrix_csc(h5ad_path: Path):
    """The whole ``X`` of an h5ad as a CSC matrix (float32)."""
    import anndata
    import h5py
    import scipy.sparse as sp

    with h5py.File(h5ad_path, "r") as handle:
        matrix = anndata.io.read_elem(handle["X"])
    return sp.csc_matrix(matrix, dtype=np.float32)


def write_gene_major(h5ad_path: Path | str, out: Path | str | None = None) -> Path:
    """Write a gene-major (CSC) copy of the expression matrix of ``h5ad_path``.

    The copy holds ``data`` (float32), ``indices`` (cell index, int32/int64) and
    ``indptr`` (one entry per gene + 1), plus ``var_names`` and the shape, so that one
    gene is read as one contiguous slice. It is written to a temporary file and renamed
    into place, so readers never see a half-written copy. The h5ad is not modified.

    Parameters
    ----------
    h5ad_path
        The ``cd8_cells.h5ad`` to index.
    out
        Target file; default :func:`gene_major_path` of ``h5ad_path``.

    Returns
    -------
    Path
        The written file.
    """
    import anndata
    import h5py

    h5ad_path = Path(h5ad_path)
    out = Path(out) if out is not None else gene_major_path(h5ad_path)
    matrix = _read_matrix_csc(h5ad_path)
    with h5py.File(h5ad_path, "r") as handle:
        var = anndata.io.read_elem(handle["var"])
    var_names = np.asarray(var.index.astype(str), dtype=object)
    n_obs, n_vars = matrix.shape
    index_dtype = np.int32 if n_obs < 2**31 else np.int64
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["format"] = GENE_MAJOR_FORMAT
            handle.attrs["version"] = GENE_MAJOR_VERSION
            handle.attrs["shape"] = np.array([n_obs, n_vars], dtype=np.int64)
            handle.attrs["source_size"] = h5ad_path.stat().st_size
            chunk = max(1, min(1 << 16, matrix.nnz))
            # lzf: fast to decompress, so reading one gene stays a few milliseconds
            handle.create_dataset(
                "data",
                data=matrix.data.astype(np.float32),
                chunks=(chunk,),
                compression="lzf",
            )
            handle.create_dataset(
                "indices",
                data=matrix.indices.astype(index_dtype),
                chunks=(chunk,),
                compression="lzf",
            )
            handle.create_dataset("indptr", data=matrix.indptr.astype(np.int64))
            handle.create_dataset(
                "var_names", data=var_names, dtype=h5py.string_dtype()
            )
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


class CellStore:
    """Read-only view of one ``cd8_cells.h5ad``: obs and embedding in memory,
    expression read one gene at a time.

    Shared per process: never modify ``obs`` or ``umap`` in place.

    Attributes
    ----------
    path
        The h5ad file.
    obs
        Cell annotations (``sample_id``, ``patient_id``, ``cd8_state``, ...).
    umap
        ``(n_cells, 2)`` float32 embedding, or ``None`` when the file has none.
    var_names
        Gene symbols in matrix order.
    """

    def __init__(self, path: Path | str):
        import anndata
        import h5py

        self.path = Path(path)
        obs, _, shape = read_cell_obs(self.path)
        with h5py.File(self.path, "r") as handle:
            umap = None
            if "obsm" in handle and schema.UMAP_KEY in handle["obsm"]:
                umap = np.asarray(
                    anndata.io.read_elem(handle["obsm"][schema.UMAP_KEY]),
                    dtype=np.float32,
                )[:, :2]
            var = anndata.io.read_elem(handle["var"])
            self._dense_x = isinstance(handle["X"], h5py.Dataset)
        self.obs = obs
        self.umap = umap
        self.var_names = pd.Index(var.index.astype(str))
        self.shape = (int(shape[0]), int(shape[1]))
        self._gene_index = {g: i for i, g in enumerate(self.var_names)}
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._csc = None
        self.gene_major = self._check_gene_major()

    def cell_name(self, cell: int) -> str:
        """Name (barcode) of cell number ``cell``; ``obs`` is indexed by number."""
        return read_cell_name(self.path, int(cell))

    @property
    def n_cells(self) -> int:
        return self.shape[0]

    def has_gene(self, gene: str) -> bool:
        """Whether ``gene`` is a column of the matrix."""
        return gene in self._gene_index

    def _check_gene_major(self) -> Path | None:
        import h5py

        copy = gene_major_path(self.path)
        if not copy.exists():
            return None
        try:
            with h5py.File(copy, "r") as handle:
                ok = (
                    handle.attrs.get("format") == GENE_MAJOR_FORMAT
                    and tuple(int(v) for v in handle.attrs["shape"]) == self.shape
                    and int(handle.attrs["source_size"]) == self.path.stat().st_size
                )
        except (OSError, KeyError, ValueError):
            ok = False
        if not ok:
            log.warning(
                "%s does not match %s (rewrite it with `cli.py prepare`); reading "
                "expression from the h5ad instead",
                copy,
                self.path.name,
            )
            return None
        return copy

    def _read_gene(self, column: int) -> np.ndarray:
        import h5py

        n = self.n_cells
        if self.gene_major is not None:
            with h5py.File(self.gene_major, "r") as handle:
                start, stop = handle["indptr"][column : column + 2]
                values = np.zeros(n, dtype=np.float32)
                if stop > start:
                    rows = handle["indices"][start:stop]
                    values[rows] = handle["data"][start:stop]
            return values
        if self._dense_x:
            with h5py.File(self.path, "r") as handle:
                return np.asarray(handle["X"][:, column], dtype=np.float32)
        if self._csc is None:
            log.warning(
                "no gene-major copy of %s: reading the whole matrix into memory "
                "(run `cli.py prepare` to write %s)",
                self.path,
                gene_major_path(self.path).name,
            )
            self._csc = _read_matrix_csc(self.path)
        col = self._csc[:, column]
        values = np.zeros(n, dtype=np.float32)
        values[col.indices] = col.data
        return values

    def gene(self, gene: str) -> np.ndarray:
        """Expression of ``gene`` in every cell (float32, read-only array).

        Raises
        ------
        KeyError
            The gene is not in the matrix.
        """
        if gene not in self._gene_index:
            raise KeyError(f"gene {gene!r} is not in {self.path.name}")
        # the lock serialises HDF5 reads (HDF5 is single-threaded anyway) and the
        # small per-process LRU of recently used genes
        with self._lock:
            cached = self._cache.get(gene)
            if cached is not None:
                self._cache.move_to_end(gene)
                return cached
            values = self._read_gene(self._gene_index[gene])
            values.setflags(write=False)
            self._cache[gene] = values
            while len(self._cache) > GENE_CACHE_SIZE:
                self._cache.popitem(last=False)
            return values

    def genes(self, genes) -> dict[str, np.ndarray]:
        """Expression of several genes (those present), keyed by gene."""
        return {g: self.gene(g) for g in genes if self.has_gene(g)}


@lru_cache(maxsize=4)
def _cell_store(path: str, mtime: float, size: int) -> CellStore:
    return CellStore(path)


def cell_store(bundle: Bundle) -> CellStore | None:
    """The bundle's :class:`CellStore` (cached per process), ``None`` without cells."""
    if not bundle.has_cells:
        return None
    path = bundle.cells_path
    stat = path.stat()
    return _cell_store(str(path), stat.st_mtime, stat.st_size)


def open_cell_store(path: Path | str) -> CellStore:
    """A :class:`CellStore` for any h5ad path (cached per process)."""
    path = Path(path)
    stat = path.stat()
    return _cell_store(str(path), stat.st_mtime, stat.st_size)


def cell_obs(bundle: Bundle) -> pd.DataFrame:
    """``obs`` of the bundle's ``cd8_cells.h5ad`` (empty frame when it has none).

    Shared and cached: never modify the returned frame in place.
    """
    if not bundle.has_cells:
        return pd.DataFrame(columns=["sample_id", "patient_id", "cd8_state"])
    return cell_store(bundle).obs


def cells_per_sample(bundle: Bundle) -> pd.Series:
    """Number of CD8 cells per ``sample_id`` (samples without cells are absent)."""
    samples = cell_obs(bundle)["sample_id"]
    if isinstance(samples.dtype, pd.CategoricalDtype):  # count codes, not 10^6 strings
        counts = samples.value_counts()
        counts = counts[counts > 0]
        counts.index = counts.index.astype(str)
        return counts
    return samples.astype(str).value_counts()
