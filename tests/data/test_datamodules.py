"""The Fashion-MNIST datamodule reads the real Debian files, splits reproducibly, and fails clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hwprune.data import DEBIAN_FASHION_MNIST_DIR, DataNotFoundError, FashionMNISTDataModule

needs_data = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (make setup installs it)",
)


@needs_data
def test_reads_the_real_files(tmp_path: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=tmp_path, batch_size=64, val_size=1000, augment=False)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 59_000 and len(dm.val_set) == 1000
    assert len(dm.test_set) == 10_000
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    assert 0 <= int(y.min()) and int(y.max()) <= 9
    # Real images: normalised pixels have roughly zero mean and unit spread, and are not constant.
    assert abs(float(x.mean())) < 0.5 and 0.5 < float(x.std()) < 1.5


@needs_data
def test_split_is_seeded_and_subset_is_honoured(tmp_path: Path) -> None:
    def first_val_labels(seed: int) -> list[int]:
        dm = FashionMNISTDataModule(data_dir=tmp_path, subset=512, val_size=1000, seed=seed)
        dm.setup("fit")
        assert len(dm.train_set) == 512 and len(dm.val_set) == 128 and len(dm.test_set) == 128
        return [int(dm.val_set[i][1]) for i in range(32)]

    assert first_val_labels(0) == first_val_labels(0)
    assert first_val_labels(0) != first_val_labels(1)


def test_missing_files_name_the_apt_package_and_path(tmp_path: Path) -> None:
    empty = tmp_path / "nowhere"
    dm = FashionMNISTDataModule(data_dir=tmp_path / "cache", source_dir=empty)
    with pytest.raises(DataNotFoundError, match=r"dataset-fashion-mnist") as info:
        dm.prepare_data()
    assert str(empty) in str(info.value)
    assert not (tmp_path / "cache" / "FashionMNIST" / "raw").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": -1}, r"`batch_size` must be a positive int, got -1"),
        ({"num_workers": -2}, r"`num_workers` must be an int >= 0, got -2"),
        ({"subset": 0}, r"`subset` must be None or a positive int, got 0"),
    ],
)
def test_bad_values_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FashionMNISTDataModule(**kwargs)
