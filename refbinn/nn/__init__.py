"""Layers with hand-written forward and backward passes."""
from .activations import Dropout, Flatten, ReLU, Tanh
from .base import BINARY, REAL, Layer, sign
from .batchnorm import BatchNorm
from .conv import Conv2d
from .dense import Dense
from .losses import log_softmax, logistic_loss, mse, sigmoid, softmax, softmax_cross_entropy
from .pool import MaxPool2d
from .sign_activation import SignActivation
from .sequential import Sequential, flatten_params, unflatten_params
