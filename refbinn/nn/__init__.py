"""Layers with hand-written forward and backward passes, and the losses.

Layers (the protocol: ``refbinn.nn.base``): ``Dense``, ``Conv2d``, ``BatchNorm``,
``MaxPool2d``, ``ReLU``, ``Tanh``, ``Dropout``, ``Flatten``, ``SignActivation``, and
``Sequential`` (with ``flatten_params`` / ``unflatten_params``); ``sign`` (0 -> +1).
Losses (minibatch mean, with their gradient): ``softmax_cross_entropy``,
``logistic_loss``, ``mse``; helpers ``log_softmax``, ``softmax``, ``sigmoid``.
"""
from .activations import Dropout, Flatten, ReLU, Tanh
from .base import BINARY, REAL, Layer, sign
from .batchnorm import BatchNorm
from .conv import Conv2d
from .dense import Dense
from .losses import log_softmax, logistic_loss, mse, sigmoid, softmax, softmax_cross_entropy
from .pool import MaxPool2d
from .sign_activation import SignActivation
from .sequential import Sequential, flatten_params, unflatten_params
