"""OOD sets (refbinn.data.ood): noise with the data set's normalisation, permuted pixels,
other data sets by name (present or not)."""
import math
import re

import numpy as np
import pytest
from scipy.stats import norm

from refbinn.data import DatasetNotFound, normalize, write_idx
from refbinn.data.ood import gaussian_noise, named_test_images, ood_set, permuted_images, uniform_noise
from refbinn.data.transforms import MNIST_MEAN, MNIST_STD, STATS

Z = 4.0


def pixels(x, mean=MNIST_MEAN, std=MNIST_STD):
    """Back from normalised values to the uint8 pixels they came from."""
    u = (np.asarray(x, np.float64) * std + mean) * 255
    np.testing.assert_allclose(u, np.round(u), atol=1e-3)           # on the uint8 grid
    return np.round(u)


def test_uniform_noise_has_uniform_pixels():
    x = uniform_noise(200, (784,), "mnist", np.random.default_rng(0))
    assert x.shape == (200, 784) and x.dtype == np.float32
    u = pixels(x)
    assert u.min() == 0 and u.max() == 255
    sd = math.sqrt((256 ** 2 - 1) / 12) / math.sqrt(u.size)          # sd of the mean of U{0..255}
    assert abs(u.mean() - 127.5) < Z * sd


def test_gaussian_noise_has_the_data_sets_moments_before_the_clip():
    """u = round(255 clip(v, 0, 1)), v ~ N(mean, std^2): P(u = 0) = Phi((0.5/255 - mean) / std)."""
    x = gaussian_noise(100, (784,), "mnist", np.random.default_rng(1))
    u = pixels(x)
    p0 = norm.cdf((0.5 / 255 - MNIST_MEAN) / MNIST_STD)
    assert abs(np.mean(u == 0) - p0) < Z * math.sqrt(p0 * (1 - p0) / u.size)
    inside = u[(u > 0) & (u < 255)] / 255                            # the unclipped part: N(mean, std^2) truncated
    lo, hi = (0.5 / 255 - MNIST_MEAN) / MNIST_STD, (254.5 / 255 - MNIST_MEAN) / MNIST_STD
    mass = norm.cdf(hi) - norm.cdf(lo)
    expect = MNIST_MEAN + MNIST_STD * (norm.pdf(lo) - norm.pdf(hi)) / mass
    assert abs(inside.mean() - expect) < Z * MNIST_STD / math.sqrt(inside.size) + 1 / 510


def test_noise_for_cifar_is_per_channel():
    """Channel c's pixels are round(255 clip(v, 0, 1)), v ~ N(mean_c, std_c^2): their mean and
    P(u = 0) match that distribution's, computed exactly over u = 0..255, for each channel."""
    rng = np.random.default_rng(2)
    x = gaussian_noise(50, (3, 32, 32), "cifar10", rng)
    assert x.shape == (50, 3, 32, 32) and x.dtype == np.float32
    mean, std = (np.asarray(v, np.float64) for v in STATS["cifar10"])
    u = pixels(x, mean[:, None, None], std[:, None, None])            # (50, 3, 32, 32)
    k = np.arange(256)
    for c in range(3):
        cdf = norm.cdf((np.append(k[:-1] + 0.5, np.inf) / 255 - mean[c]) / std[c])
        p = np.diff(np.concatenate([[0.0], cdf]))                     # P(u = k), k = 0..255
        want, sd = p @ k, math.sqrt(p @ k ** 2 - (p @ k) ** 2)
        uc = u[:, c]             # CIFAR-10's channel means differ by ~ 5 sd of this test's mean
        assert abs(uc.mean() - want) < Z * sd / math.sqrt(uc.size), c
        assert abs(np.mean(uc == 0) - p[0]) < Z * math.sqrt(p[0] * (1 - p[0]) / uc.size), c
    assert uniform_noise(5, (3, 32, 32), "cifar100", rng).shape == (5, 3, 32, 32)
    with pytest.raises(ValueError, match=r"shape \(3, H, W\)"):
        uniform_noise(5, (784,), "cifar10", rng)


def test_permuted_images_use_one_permutation_for_all():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 20)).astype(np.float32)
    xp = permuted_images(x, np.random.default_rng(4))
    perm = np.random.default_rng(4).permutation(20)
    np.testing.assert_array_equal(xp, x[:, perm])
    assert not np.array_equal(xp, x)
    c = rng.normal(size=(4, 3, 5, 5))
    cp = permuted_images(c, np.random.default_rng(5))
    perm = np.random.default_rng(5).permutation(25)
    np.testing.assert_array_equal(cp.reshape(4, 3, 25), c.reshape(4, 3, 25)[:, :, perm])   # same in every channel


def fake_mnist(root, kind, n=30, seed=0):
    """Write the four IDX files of a small fake (Fashion-)MNIST under root/kind/."""
    rng = np.random.default_rng(seed)
    folder = root / kind
    folder.mkdir(parents=True)
    for split in ("train", "t10k"):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return folder


def test_named_set_is_normalised_like_the_in_distribution_set(tmp_path):
    fake_mnist(tmp_path, "fashion-mnist")
    x = named_test_images("fashion-mnist", (784,), "mnist", root=tmp_path)
    from refbinn.data import load_mnist
    raw = load_mnist(tmp_path, kind="fashion-mnist").x_test
    np.testing.assert_array_equal(x, normalize(raw, "mnist").reshape(30, 784))
    xt = np.zeros((10, 784), np.float32)
    assert ood_set("fashion-mnist", xt, "mnist", np.random.default_rng(0), root=tmp_path).shape == (30, 784)


def test_named_set_absent_or_of_another_shape(tmp_path):
    with pytest.raises(DatasetNotFound):
        named_test_images("fashion-mnist", (784,), "mnist", root=tmp_path)
    from refbinn.data import write_fake_cifar
    write_fake_cifar(tmp_path, kind="cifar10", n_train=10, n_test=10, seed=0)
    with pytest.raises(ValueError, match=r"has images of shape \(3, 32, 32\); the network takes \(784,\)"):
        named_test_images("cifar10", (784,), "mnist", root=tmp_path)


def test_unknown_set_names_the_choices():
    with pytest.raises(ValueError, match="OOD set must be one of 'uniform', 'gaussian', 'permuted'"):
        ood_set("svhn", np.zeros((2, 784), np.float32), "mnist", np.random.default_rng(0))


@pytest.mark.parametrize("call,says", [
    (lambda: uniform_noise(2, 784, "mnist", np.random.default_rng(0)), "shape must be a tuple of integers >= 1 (one image's), got 784"),
    (lambda: gaussian_noise(2, (2.5,), "mnist", np.random.default_rng(0)), "shape must be a tuple of integers >= 1"),
    (lambda: uniform_noise(2, (4,), "mnist", None), "uniform_noise: rng must be a numpy.random.Generator, got NoneType"),
    (lambda: permuted_images(np.zeros((2, 3)), 0), "permuted_images: rng must be a numpy.random.Generator, got int"),
    (lambda: gaussian_noise(2, (4,), "mnist", np.random.RandomState(0)),
     "gaussian_noise: rng must be a numpy.random.Generator, got RandomState"),
])
def test_ood_noise_refuses_shape_and_rng_of_the_wrong_kind(call, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        call()
