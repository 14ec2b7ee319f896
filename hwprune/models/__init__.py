"""Model factories: torchvision classifiers adapted to small inputs, plus a small residual default."""

from hwprune.models.factory import MODEL_NAMES, SmallResNet, build_model

__all__ = ["MODEL_NAMES", "SmallResNet", "build_model"]
