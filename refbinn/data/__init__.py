"""Data sets of the paper: loaders, transforms, and a verified downloader."""
from .cifar import load_cifar, read_batch, write_fake_cifar
from .dataset import ImageData
from .download import SOURCES, Checksum, download, file_digest, verify
from .errors import ChecksumError, DataFormatError, DatasetNotFound, DownloadError
from .idx import read_idx, write_idx
from .mnist import load_mnist
from .packaged import PACKAGED, SNELSON_SHA256, packaged_file
from .root import DATASETS, ENV_VAR, cache_root, candidate_roots, default_root, describe_data, find_dataset
from .toy import (Snelson, Standardization, legacy_pixel_permutations, load_snelson, permute_pixels,
                  permuted_mnist_tasks, pixel_permutations, snelson_grid, standardize, two_moons)
from .transforms import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, MNIST_MEAN, MNIST_STD,
                         STATS, Split, augment_cifar, batches, crop_flip, normalize, normalize_with,
                         normalized_black, split_indices, train_val_split)
