"""Publishing a bundle: atomic, and never over a dataset another import just wrote."""

from __future__ import annotations

import pytest

from data.errors import DataError
from data.importers import store
from tests.conftest import small_cohort


def _race(monkeypatch, data_dir, name):
    """Make another import publish ``name`` while this one validates its copy."""
    real = store.load_bundle

    def load_and_race(path):
        result = real(path)
        other = data_dir / name
        other.mkdir(exist_ok=True)
        (other / "from-the-other-import.txt").write_text("keep me")
        return result

    monkeypatch.setattr(store, "load_bundle", load_and_race)


@pytest.mark.parametrize("existing_dir", [True, False])
def test_concurrent_import_of_the_same_name_is_refused_not_overwritten(
    tmp_path, monkeypatch, existing_dir
):
    data_dir = tmp_path / "datasets"
    if existing_dir:
        data_dir.mkdir()
    _race(monkeypatch, data_dir, "trial")
    with pytest.raises(DataError) as info:
        store.write_dataset(
            data_dir, "trial", small_cohort(), store.make_meta("trial", title="T")
        )
    assert "by another import while this one ran" in str(info.value)
    assert "--force" in str(info.value)
    # the other import's dataset is untouched; no temporary folder is left behind
    assert (data_dir / "trial" / "from-the-other-import.txt").read_text() == "keep me"
    assert sorted(p.name for p in data_dir.iterdir()) == ["trial"]


def test_force_replaces_even_a_concurrently_written_dataset(tmp_path, monkeypatch):
    data_dir = tmp_path / "datasets"
    _race(monkeypatch, data_dir, "trial")
    out = store.write_dataset(
        data_dir, "trial", small_cohort(), store.make_meta("trial", title="T"),
        force=True,
    )  # fmt: skip
    assert (out / "cohort.csv").exists()
    assert not (out / "from-the-other-import.txt").exists()
