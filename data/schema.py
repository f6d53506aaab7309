"""The dataset bundle format: file names, columns and controlled vocabularies."""

from __future__ import annotations

DATASET_JSON = "dataset.json"
COHORT_CSV = "cohort.csv"
CELLS_H5AD = "cd8_cells.h5ad"

#: Keys every ``dataset.json`` must carry.
DATASET_JSON_REQUIRED = (
    "name",
    "title",
    "description",
    "source",
    "license",
    "synthetic",
    "version",
)

#: Columns every ``cohort.csv`` must carry (one row per sample).
REQUIRED_COLUMNS = (
    "sample_id",
    "patient_id",
    "cohort",
    "tumor_type",
    "treatment",
    "timepoint",
    "recist",
)

OPTIONAL_COLUMNS = (
    "response",
    "os_months",
    "os_event",
    "pfs_months",
    "pfs_event",
)

#: Cell-frequency columns are ``frac_<celltype>``: fractions of CD45+ immune cells.
FRACTION_PREFIX = "frac_"
REQUIRED_FRACTIONS = ("frac_nk", "frac_cd8")
#: Score columns (e.g. signature scores from bulk expression) are ``score_<name>``:
#: unbounded, usable as metrics but never called fractions.
SCORE_PREFIX = "score_"

TIMEPOINTS = ("pre", "on", "post")
RECIST_VALUES = ("CR", "PR", "SD", "PD", "NE")
RESPONSE_VALUES = ("R", "NR")
#: Checkpoint classes; pooled ones keep what a published table says (``PD-1/PD-L1``
#: -> ``anti-PD-(L)1``) instead of reading as non-checkpoint ``other``. New classes
#: go before ``other``, which stays last. See data/importers/treatments.py.
TREATMENTS = (
    "anti-PD-1",
    "anti-PD-L1",
    "anti-CTLA-4",
    "anti-PD-1 + anti-CTLA-4",
    "anti-PD-(L)1",
    "anti-PD-L1 + anti-CTLA-4",
    "anti-PD-(L)1 + anti-CTLA-4",
    "ICB, unspecified",
    "ICB + other agent",
    "other",
)

#: Per-sample provenance columns an import may add (kept by validation).
#: ``fraction_source``: what the ``frac_*`` numbers are (a key of
#: ``FRACTION_SOURCES``); ``cibersort_p``: CIBERSORT deconvolution p-value;
#: ``timepoint_note``: how the timepoint was known.
FRACTION_SOURCE = "fraction_source"
CIBERSORT_P = "cibersort_p"
TIMEPOINT_NOTE = "timepoint_note"
PROVENANCE_COLUMNS = (FRACTION_SOURCE, CIBERSORT_P, TIMEPOINT_NOTE)
#: fraction_source value -> what a frac_* value is a fraction of.
FRACTION_SOURCES = {
    "cibersort_relative": "fraction of LM22 immune cells (CIBERSORT relative)",
    "cibersortx_absolute": "fraction of LM22 immune cells (CIBERSORTx absolute "
    "score, rescaled per sample)",
    "counts": "fraction of CD45+ cells (flow/sc counts)",
}
TIMEPOINT_ASSUMED = "not reported (assumed pre-treatment)"

#: Columns that identify a patient: ids repeat across studies.
PATIENT_KEY = ("cohort", "patient_id")

#: ``obs`` columns every ``cd8_cells.h5ad`` must carry, and its embedding key.
CELL_OBS_REQUIRED = ("sample_id", "patient_id", "cd8_state")
UMAP_KEY = "X_umap"

#: Every filterable cohort field, in sidebar order.
FILTER_FIELDS = ("tumor_type", "treatment", "cohort", "timepoint", "response")

#: Markers of the CD8 state that, in Song et al. (Cancer Discovery 2025), NK cells
#: hold back:
#: CD69+ BCL2+ EOMES+ GZMB+ TIM3- GITR-. Gene symbol -> (protein name, sign).
SONG_GATE = (
    ("CD69", "CD69", "+"),
    ("BCL2", "BCL2", "+"),
    ("EOMES", "EOMES", "+"),
    ("GZMB", "Granzyme B", "+"),
    ("HAVCR2", "TIM-3", "-"),
    ("TNFRSF18", "GITR", "-"),
)
PROTEIN_NAMES = {gene: protein for gene, protein, _ in SONG_GATE}
