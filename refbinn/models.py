"""The networks of the paper's experiments (spec section 9), as ``Sequential`` models.

Layer names follow torch's style, so parameter and state names read like a
torch ``state_dict`` of the same network: ``fc1.weight``, ``conv3.weight``,
``bn2.running_var``. All Dense/Conv2d weights are tagged ``"binary"`` (first
and last layers included, as in the paper); BatchNorm layers have no affine
parameters except where stated.

=================  ===========================================================
builder            experiment
=================  ===========================================================
``mlp_mnist``      MNIST, 784-2048-2048-2048-10, dropout 0.2
``vgg_cifar``      CIFAR-10 / CIFAR-100, VGG-like CNN
``mlp_continual``  permuted MNIST continual learning, 784-100-100-10
``mlp_toy``        two moons (2-64-64-1) and Snelson (1-64-64-1, output BN)
=================  ===========================================================
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping

from .checks import check_int
from .nn import BatchNorm, Conv2d, Dense, Dropout, Flatten, MaxPool2d, ReLU, Sequential, Tanh


def mlp_mnist(in_features=784, hidden=(2048, 2048, 2048), classes=10, dropout=0.2,
              bn_momentum=0.15, bn_eps=1e-4):
    """Dropout -> [fc_k (no bias) -> bn_k -> ReLU -> Dropout] per hidden layer -> fc -> bn; logits = last BN output.

    The authors' MNIST MLP: dropout on the input and after each hidden ReLU,
    BatchNorm without affine (torch momentum 0.15, eps 1e-4) after every
    Linear, the last one included.

    Parameters
    ----------
    in_features : int
        784 for MNIST (28*28 pixels, flattened).
    hidden : sequence of int
        Hidden widths; (2048, 2048, 2048) in the paper.
    classes : int
    dropout : float in [0, 1)
    bn_momentum, bn_eps : float
        BatchNorm running-stat momentum (torch convention) and epsilon.

    Returns
    -------
    Sequential
        Parameters ``fc1.weight`` ... ``fc{L}.weight`` (L = len(hidden) + 1),
        state ``bn1.running_mean``, ``bn1.running_var``, ... ``bn{L}.running_var``.
        Layers (two hidden): drop0 fc1 bn1 relu1 drop1 fc2 bn2 relu2 drop2 fc3 bn3.
    """
    return _mlp("mlp_mnist", in_features, hidden, classes, dropout, bn_momentum, bn_eps)


def vgg_cifar(num_classes=10, width=1.0, bn_momentum=0.1, bn_eps=1e-5, in_channels=3, image_size=32):
    """conv128-conv128-pool-conv256-conv256-pool-conv512-conv512-pool-fc1024-fc1024-fc(classes).

    3x3 convolutions with padding 1 and no bias, BatchNorm without affine after
    every conv and fc layer (the last included: logits = last BN output), ReLU
    after every BN but the last, 2x2 max pooling with stride 2.

    Parameters
    ----------
    num_classes : int
        10 (CIFAR-10) or 100 (CIFAR-100).
    width : float > 0
        Multiplies every channel and hidden count (rounded, at least 1):
        ``width=1/64`` gives a 2-2-4-4-8-8-16-16 network for tests.
    bn_momentum, bn_eps : float
        PyTorch defaults 0.1 and 1e-5.
    in_channels, image_size : int
        Input (N, in_channels, image_size, image_size); the flattened size
        after three poolings is ``c6 * (image_size // 8)**2``.

    Returns
    -------
    Sequential
        Parameters ``conv1.weight`` ... ``conv6.weight`` (OIHW), ``fc1.weight``
        ... ``fc3.weight``; state ``bn1`` ... ``bn9``. Layers: conv1 bn1 relu1 conv2 bn2
        relu2 pool1 conv3 bn3 relu3 conv4 bn4 relu4 pool2 conv5 bn5 relu5 conv6 bn6 relu6
        pool3 flatten fc1 bn7 relu7 fc2 bn8 relu8 fc3 bn9.
    """
    if not float(width) > 0:
        raise ValueError(f"vgg_cifar: width must be in (0, inf), got {width!r}")
    in_channels = check_int("vgg_cifar: in_channels", in_channels, 1)
    num_classes = check_int("vgg_cifar: num_classes", num_classes, 1)
    side = check_int("vgg_cifar: image_size", image_size, 1) // 8       # three 2x2 poolings
    if side < 1:
        raise ValueError(f"vgg_cifar: image_size must be >= 8 (three 2x2 poolings), got {image_size}")
    ch = [max(1, round(c * width)) for c in (128, 128, 256, 256, 512, 512)]
    fc = [max(1, round(h * width)) for h in (1024, 1024)]

    def bn(c, k):
        return BatchNorm(c, eps=bn_eps, momentum=bn_momentum, affine=False, name=f"bn{k}")

    layers, prev = [], in_channels
    for k, c in enumerate(ch, start=1):
        layers += [Conv2d(prev, c, kernel_size=3, padding=1, bias=False, name=f"conv{k}"),
                   bn(c, k), ReLU(name=f"relu{k}")]
        if k % 2 == 0:
            layers.append(MaxPool2d(2, name=f"pool{k // 2}"))
        prev = c
    layers.append(Flatten(name="flatten"))                              # (N, c6 * side * side)
    sizes = [ch[-1] * side * side] + fc + [num_classes]
    for k in range(1, 4):
        layers += [Dense(sizes[k - 1], sizes[k], bias=False, name=f"fc{k}"), bn(sizes[k], 6 + k)]
        if k < 3:
            layers.append(ReLU(name=f"relu{6 + k}"))
    return Sequential(*layers)


def mlp_continual(in_features=784, hidden=(100, 100), classes=10, bn_momentum=0.1, bn_eps=1e-5):
    """fc1 -> bn1 -> ReLU -> fc2 -> bn2 -> ReLU -> fc3 -> bn3: permuted-MNIST 784-100-100-10.

    No bias, no dropout, BatchNorm without affine after every layer (by default with torch's
    defaults, momentum 0.1 and eps 1e-5; the authors' MLP_CL_h100 uses 0.15 and 1e-4);
    logits = last BN output.

    Parameters
    ----------
    in_features : int
    hidden : sequence of int
        (100, 100) in the paper; smaller in tests.
    classes : int
    bn_momentum : float
        torch's BatchNorm momentum m: running = (1 - m) * running + m * batch; default 0.1.
    bn_eps : float
        Added to the variance before the square root; default 1e-5.

    Returns
    -------
    Sequential
    """
    return _mlp("mlp_continual", in_features, hidden, classes, None, bn_momentum, bn_eps)


def _mlp(fn, in_features, hidden, classes, dropout, bn_momentum, bn_eps):
    """[Dropout ->] (fc_k -> bn_k -> ReLU [-> Dropout]) per hidden layer -> fc -> bn; no dropout if None."""
    sizes = [check_int(f"{fn}: in_features", in_features, 1)]
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
        raise ValueError(f"{fn}: hidden must be a sequence of layer widths (integers >= 1), got {hidden!r}")
    sizes += [check_int(f"{fn}: hidden", h, 1) for h in hidden]
    sizes += [check_int(f"{fn}: classes", classes, 1)]
    layers = [] if dropout is None else [Dropout(dropout, name="drop0")]
    n = len(sizes) - 1
    for k in range(1, n + 1):
        layers += [Dense(sizes[k - 1], sizes[k], bias=False, name=f"fc{k}"),
                   BatchNorm(sizes[k], eps=bn_eps, momentum=bn_momentum, affine=False, name=f"bn{k}")]
        if k < n:
            layers.append(ReLU(name=f"relu{k}"))
            if dropout is not None:
                layers.append(Dropout(dropout, name=f"drop{k}"))
    return Sequential(*layers)


def mlp_toy(in_features, out_features, hidden=64, act="tanh", bias=True, output_bn=False):
    """fc1 -> act -> fc2 -> act -> fc3 [-> bn3]: the 2-64-64-1 and 1-64-64-1 toy networks.

    Two moons: ``mlp_toy(2, 1)`` (tanh, biases, logistic loss). Snelson:
    ``mlp_toy(1, 1, output_bn=True)``, one BatchNorm without affine (torch
    defaults) on the output, named ``bn3``.

    Parameters
    ----------
    in_features, out_features : int
    hidden : int
        Width of both hidden layers.
    act : {"tanh", "relu"}
    bias : bool
        Biases on every Dense layer (tagged ``"real"``; the two-moons script
        binarises them too, which is the optimizer's choice, not the model's).
    output_bn : bool

    Returns
    -------
    Sequential
    """
    acts = {"tanh": Tanh, "relu": ReLU}
    if act not in acts:
        raise ValueError(f"mlp_toy: act must be one of {sorted(acts)}, got {act!r}")
    h = check_int("mlp_toy: hidden", hidden, 1)
    sizes = [check_int("mlp_toy: in_features", in_features, 1), h, h,
             check_int("mlp_toy: out_features", out_features, 1)]
    layers = []
    for k in range(1, 4):
        layers.append(Dense(sizes[k - 1], sizes[k], bias=bias, name=f"fc{k}"))
        if k < 3:
            layers.append(acts[act](name=f"{act}{k}"))
    if output_bn:
        layers.append(BatchNorm(sizes[3], affine=False, name="bn3"))
    return Sequential(*layers)


# -- the registry: files and presets name a model only by these keys ----------------------
MODELS = {"mlp_mnist": mlp_mnist, "vgg_cifar": vgg_cifar, "mlp_continual": mlp_continual,
          "mlp_toy": mlp_toy}


def build_model(name, kwargs=None, where="model"):
    """``MODELS[name](**kwargs)``; ValueError (starting with ``where``, e.g. the file) for another name.

    Parameters
    ----------
    name : str
        A key of ``MODELS``: ``"mlp_mnist"``, ``"vgg_cifar"``, ``"mlp_continual"``, ``"mlp_toy"``.
    kwargs : dict, optional
        Keyword arguments of that builder (None: its defaults).
    where : str, optional
        What to name in the error message (the file or preset the name came from).

    Returns
    -------
    Sequential
        The model (layers only: its parameters come from ``model.init(rng)``).

    Raises
    ------
    ValueError
        For another name, ``kwargs`` not a dict, a missing or unknown argument, or a value
        the builder refuses.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"{where}: model must be one of {', '.join(map(repr, MODELS))}, got {name!r}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ValueError(f"{where}: the arguments of model {name!r} must be a dict, got {type(kwargs).__name__}")
    try:                                     # a missing or unknown argument: ValueError, not TypeError
        inspect.signature(MODELS[name]).bind(**(kwargs or {}))
    except TypeError as e:
        raise ValueError(f"{where}: model {name!r}: {e}") from None
    return MODELS[name](**(kwargs or {}))
