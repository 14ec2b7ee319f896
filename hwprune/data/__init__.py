"""LightningDataModules: Fashion-MNIST (offline, from Debian's package) and CIFAR-10 (online)."""

from hwprune.data.datamodules import (
    DEBIAN_FASHION_MNIST_DIR,
    Cifar10DataModule,
    DataNotFoundError,
    FashionMNISTDataModule,
)

__all__ = ["DEBIAN_FASHION_MNIST_DIR", "Cifar10DataModule", "DataNotFoundError", "FashionMNISTDataModule"]
