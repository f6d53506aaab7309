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
TREATMENTS = (
    "anti-PD-1",
    "anti-PD-L1",
    "anti-CTLA-4",
    "anti-PD-1 + anti-CTLA-4",
    "other",
)

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
