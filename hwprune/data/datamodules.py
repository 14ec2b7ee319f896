"""Datamodules for the fine-tuning runs.

Fashion-MNIST is read offline from the Debian package ``dataset-fashion-mnist`` (its four IDX ``.gz`` files
live in ``/usr/share/datasets/fashion-mnist``). torchvision's ``FashionMNIST`` wants them un-gzipped in
``<root>/FashionMNIST/raw/``; :meth:`FashionMNISTDataModule.prepare_data` does that once and never downloads.
"""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

log = logging.getLogger(__name__)

__all__ = ["DEBIAN_FASHION_MNIST_DIR", "Cifar10DataModule", "DataNotFoundError", "FashionMNISTDataModule"]

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Mean/std of the Fashion-MNIST training set.
_FMNIST_NORM = transforms.Normalize((0.2860,), (0.3530,))
_CIFAR_NORM = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


class DataNotFoundError(FileNotFoundError):
    """Raised when the dataset files are not where the datamodule looked."""


def _check_common(batch_size: int, num_workers: int, val_size: int, subset: int | None, seed: int) -> None:
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"`num_workers` must be an int >= 0, got {num_workers!r}")
    if not isinstance(val_size, int) or val_size <= 0:
        raise ValueError(f"`val_size` must be a positive int, got {val_size!r}")
    if subset is not None and (not isinstance(subset, int) or subset <= 0):
        raise ValueError(f"`subset` must be None or a positive int, got {subset!r}")
    if not isinstance(seed, int):
        raise ValueError(f"`seed` must be an int, got {seed!r}")


class _SplitDataModule(pl.LightningDataModule):
    """Shared train/val/test plumbing: a seeded split of the training set and optional subsets."""

    input_shape: tuple[int, int, int, int]

    def __init__(
        self, batch_size: int, num_workers: int, val_size: int, subset: int | None, seed: int
    ) -> None:
        super().__init__()
        _check_common(batch_size, num_workers, val_size, subset, seed)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.subset = subset
        self.seed = seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        """Return (train-with-augment, train-plain, test) datasets."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_aug, train_plain, test = self._datasets()
        n = len(train_plain)
        if self.val_size >= n:
            raise ValueError(f"`val_size` must be smaller than the training set ({n}), got {self.val_size}")
        gen = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(n, generator=gen).tolist()
        val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
        if self.subset is not None:
            train_idx = train_idx[: self.subset]
            val_idx = val_idx[: max(1, min(len(val_idx), self.subset // 4))]
            test_perm = torch.randperm(len(test), generator=gen).tolist()[: max(1, self.subset // 4)]
            test = Subset(test, test_perm)
        self.train_set = Subset(train_aug, train_idx)
        self.val_set = Subset(train_plain, val_idx)
        self.test_set = test

    def _loader(self, ds: Dataset | None, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("call `setup()` before asking for a dataloader")
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


class FashionMNISTDataModule(_SplitDataModule):
    """Fashion-MNIST (60k train / 10k test, 28x28 grey) from Debian's ``dataset-fashion-mnist``.

    Args:
        data_dir: Cache folder; the IDX files are un-gzipped into ``<data_dir>/FashionMNIST/raw/``.
        source_dir: Where the ``.gz`` files are (the Debian package's folder by default).
        batch_size: Batch size of every loader.
        num_workers: DataLoader workers.
        val_size: Images held out of the training set for validation (seeded split).
        subset: If set, use only this many training images (and a quarter as many for val and test).
        seed: Seed of the split and of the shuffling.
        augment: Random crop with 2-pixel padding and horizontal flips on the training set.

    Raises:
        ValueError: If a size or count is out of range.
        DataNotFoundError: In ``prepare_data``, if neither the cache nor ``source_dir`` holds the files;
            the message names the apt package and the folders searched.

    Example:
        >>> dm = FashionMNISTDataModule(subset=512)
        >>> dm.prepare_data(); dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
    """

    input_shape = (1, 1, 28, 28)
    num_classes = 10

    def __init__(
        self,
        data_dir: str | Path = "~/.cache/hwprune/data",
        source_dir: str | Path = DEBIAN_FASHION_MNIST_DIR,
        batch_size: int = 128,
        num_workers: int = 0,
        val_size: int = 5000,
        subset: int | None = None,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, val_size, subset, seed)
        self.data_dir = Path(data_dir).expanduser()
        self.source_dir = Path(source_dir).expanduser()
        self.augment = augment

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "FashionMNIST" / "raw"

    def prepare_data(self) -> None:
        """Un-gzip the Debian package's IDX files into the cache (once). Never downloads."""
        missing = [f for f in _FMNIST_FILES if not (self.raw_dir / f).is_file()]
        if not missing:
            return
        sources = [self.source_dir / f"{f}.gz" for f in missing]
        absent = [s for s in sources if not s.is_file()]
        if absent:
            raise DataNotFoundError(
                f"Fashion-MNIST files not found: looked in {self.source_dir} for "
                f"{', '.join(s.name for s in absent)} (and in {self.raw_dir}). "
                "Install them with `apt-get install dataset-fashion-mnist` "
                "(or pass `source_dir=` a folder holding the four IDX .gz files)."
            )
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        for name, src in zip(missing, sources, strict=True):
            tmp = self.raw_dir / f".{name}.tmp"
            with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            tmp.replace(self.raw_dir / name)  # atomic: a killed run never leaves half a file
        log.info("Fashion-MNIST un-gzipped from %s into %s", self.source_dir, self.raw_dir)

    def _datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        self.prepare_data()
        plain = transforms.Compose([transforms.ToTensor(), _FMNIST_NORM])
        aug = (
            transforms.Compose(
                [transforms.RandomCrop(28, padding=2), transforms.RandomHorizontalFlip(), plain]
            )
            if self.augment
            else plain
        )
        root = str(self.data_dir)
        return (
            datasets.FashionMNIST(root, train=True, transform=aug, download=False),
            datasets.FashionMNIST(root, train=True, transform=plain, download=False),
            datasets.FashionMNIST(root, train=False, transform=plain, download=False),
        )


class Cifar10DataModule(_SplitDataModule):
    """CIFAR-10 through torchvision, downloaded on first use. For users who are online; tests never use it.

    Args:
        data_dir: Download and cache folder.
        batch_size: Batch size of every loader.
        num_workers: DataLoader workers.
        val_size: Images held out of the training set for validation (seeded split).
        subset: If set, use only this many training images.
        seed: Seed of the split and of the shuffling.
        augment: Random crop with 4-pixel padding and horizontal flips on the training set.

    Raises:
        ValueError: If a size or count is out of range.
    """

    input_shape = (1, 3, 32, 32)
    num_classes = 10

    def __init__(
        self,
        data_dir: str | Path = "~/.cache/hwprune/data",
        batch_size: int = 128,
        num_workers: int = 2,
        val_size: int = 5000,
        subset: int | None = None,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, val_size, subset, seed)
        self.data_dir = Path(data_dir).expanduser()
        self.augment = augment

    def prepare_data(self) -> None:
        datasets.CIFAR10(str(self.data_dir), train=True, download=True)
        datasets.CIFAR10(str(self.data_dir), train=False, download=True)

    def _datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        plain = transforms.Compose([transforms.ToTensor(), _CIFAR_NORM])
        aug = (
            transforms.Compose(
                [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), plain]
            )
            if self.augment
            else plain
        )
        root = str(self.data_dir)
        return (
            datasets.CIFAR10(root, train=True, transform=aug, download=False),
            datasets.CIFAR10(root, train=True, transform=plain, download=False),
            datasets.CIFAR10(root, train=False, transform=plain, download=False),
        )
