"""The tuple every image loader returns."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np


class ImageData(NamedTuple):
    """Train and test images with their labels, and the folder they were read from.

    Attributes
    ----------
    x_train : ndarray, uint8, (N_train, H, W) for MNIST or (N_train, 3, 32, 32) for CIFAR
    y_train : ndarray, int64, (N_train,)
    x_test : ndarray, uint8, (N_test, ...)
    y_test : ndarray, int64, (N_test,)
    source : pathlib.Path
        The data set's folder.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: Path
