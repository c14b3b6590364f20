"""A tree of NamedTuples, dicts, lists, registered objects, arrays and scalars as flat .npz entries.

    tree_to_arrays(tree, prefix, registry) -> {"prefix#tag": array, "prefix/child#tag": ...}
    tree_from_arrays(arrays, prefix, registry, where) -> the same tree (the round trip is exact)

Classes (a state NamedTuple, an optimizer) are written as their KEY in ``registry``,
a fixed dict key -> class that the caller owns (``refbinn.optim.registry.FILE_NAMES``);
an object is rebuilt as ``registry[key](**config)`` from its ``config()``. Nothing
named in a file is imported or looked up anywhere else: a key not in the registry is
a ValueError naming the file and the key. This module imports no other refbinn
module, so file handling sits below every floor that uses it.

The entries, for a reader in other code (``numpy.load(path, allow_pickle=False)``)::

    node                 entry "<path>#<tag>" holds             children at
    NamedTuple           its registry key (0-d str)             <path>/<field name>, per field
    dict                 its keys, in order (1-d str array)     <path>/<i>: the i-th key's value
    list, tuple          its length (0-d int)                   <path>/<i>
    None                 0 (0-d int)                            -
    bool, int, float, str  the value (0-d array)                -
    ndarray, NumPy scalar  the array itself                     -
    numpy Generator      its bit generator's state as JSON      -
    object (optimizer)   its registry key (0-d str)             <path>/config: its config() dict

A NamedTuple's fields are found by their names under its path (the file keeps no field
order; the registry's class gives it back).
"""
from __future__ import annotations

import numpy as np

from .rng import generator_from_json, generator_state_json

# "optimizer": the tag of "object" in files written before issue 11 (the value then was
# 'module:QualName'; the registry maps those old names too)
TAGS = ("object", "optimizer", "namedtuple", "dict", "list", "tuple", "none", "bool", "int", "float", "str",
        "array", "generator")


def _key_of(cls, registry, prefix):
    for k, c in registry.items():
        if c is cls:
            return k
    raise TypeError(f"cannot save a {cls.__name__} at '{prefix}': it has no key in the file registry")


def _pack(node, prefix, out, registry):
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        out[f"{prefix}#namedtuple"] = np.array(_key_of(type(node), registry, prefix))
        for f in node._fields:
            _pack(getattr(node, f), f"{prefix}/{f}", out, registry)
    elif isinstance(node, dict):
        keys = list(node)
        out[f"{prefix}#dict"] = np.array(keys, dtype=str) if keys else np.zeros(0, dtype=str)
        for i, k in enumerate(keys):
            _pack(node[k], f"{prefix}/{i}", out, registry)
    elif isinstance(node, (list, tuple)):
        out[f"{prefix}#{type(node).__name__}"] = np.array(len(node))
        for i, v in enumerate(node):
            _pack(v, f"{prefix}/{i}", out, registry)
    elif node is None:
        out[f"{prefix}#none"] = np.array(0)
    elif isinstance(node, (bool, int, float, str)):
        out[f"{prefix}#{type(node).__name__}"] = np.array(node)
    elif isinstance(node, (np.ndarray, np.generic)):
        out[f"{prefix}#array"] = np.asarray(node)
    elif isinstance(node, np.random.Generator):
        out[f"{prefix}#generator"] = np.array(generator_state_json(node))
    elif hasattr(node, "config"):
        out[f"{prefix}#object"] = np.array(_key_of(type(node), registry, prefix))
        _pack(node.config(), prefix + "/config", out, registry)
    else:
        raise TypeError(f"cannot save a {type(node).__name__} at '{prefix}'")


def _lookup(registry, key, where, prefix):
    if key not in registry:
        known = [k for k in registry if ":" not in k]          # not the pre-issue-11 spellings
        raise ValueError(f"{where}: entry '{prefix}' names {key!r}, which is not one of "
                         f"{', '.join(map(repr, known))}; nothing from the file was run")
    return registry[key]


def _saved_fields(data, prefix):
    """The field names saved under a NamedTuple's ``prefix``, in file order."""
    names = []
    for key in data:
        if key.startswith(prefix + "/"):
            f = key[len(prefix) + 1:].split("/")[0].split("#")[0]
            if f not in names:
                names.append(f)
    return ", ".join(names) or "none"


def _unpack(data, prefix, registry, where):
    for tag in TAGS:
        key = f"{prefix}#{tag}"
        if key in data:
            break
    else:
        raise ValueError(f"{where}: no entry '{prefix}'")
    v = data[key]
    if tag in ("object", "optimizer"):
        cls = _lookup(registry, str(v), where, prefix)
        return cls(**_unpack(data, prefix + "/config", registry, where))
    if tag == "namedtuple":
        cls = _lookup(registry, str(v), where, prefix)
        for f in cls._fields:
            if not any(f"{prefix}/{f}#{t}" in data for t in TAGS):
                raise ValueError(f"{where}: no entry '{prefix}/{f}': the file holds a {cls.__name__} "
                                 f"without the field '{f}', written by an earlier version of refbinn "
                                 f"(its fields then: {_saved_fields(data, prefix)}); it cannot be "
                                 f"continued exactly; start the run again")
        return cls(*[_unpack(data, f"{prefix}/{f}", registry, where) for f in cls._fields])
    if tag == "dict":
        return {str(k): _unpack(data, f"{prefix}/{i}", registry, where) for i, k in enumerate(v)}
    if tag in ("list", "tuple"):
        items = [_unpack(data, f"{prefix}/{i}", registry, where) for i in range(int(v))]
        return items if tag == "list" else tuple(items)
    if tag == "none":
        return None
    if tag == "str":
        return str(v)
    if tag in ("bool", "int", "float"):
        return {"bool": bool, "int": int, "float": float}[tag](v.item())
    if tag == "generator":
        return generator_from_json(str(v), where)
    return v


def tree_to_arrays(tree, prefix, registry):
    """The flat dict of npz entries for ``tree`` under ``prefix``; classes written as registry keys.

    Parameters
    ----------
    tree : object
        NamedTuples, dicts, lists, tuples, None, bool/int/float/str, NumPy arrays and
        scalars, Generators, and objects with a ``config()`` method, nested freely. A
        NamedTuple or ``config()`` object must be a value of ``registry``.
    prefix : str
        The entry name of the root; children are ``prefix/<field or index>``.
    registry : dict str -> type
        Key -> class, the names under which classes are written.

    Returns
    -------
    dict str -> ndarray
        One entry ``"<path>#<tag>"`` per node (the tag is one of ``TAGS``), ready for
        ``atomic_savez``. TypeError names the path of a node that cannot be saved.
    """
    out = {}
    _pack(tree, prefix, out, registry)
    return out


def tree_from_arrays(data, prefix, registry, where="file"):
    """The tree ``tree_to_arrays`` wrote under ``prefix``; ``where`` (the file) names errors.

    Parameters
    ----------
    data : mapping str -> ndarray
        The entries read from the .npz (``tree_to_arrays``'s output or a superset).
    prefix : str
        The root's entry name, as given to ``tree_to_arrays``.
    registry : dict str -> type
        Key -> class; a class key not in it is a ValueError (nothing named by the file is
        imported).
    where : str, optional
        What to name in error messages (the file's path).

    Returns
    -------
    object
        The tree, rebuilt exactly: objects as ``registry[key](**config)``, NamedTuples from
        their fields, lists and tuples as such, scalars as Python ``bool``/``int``/
        ``float``/``str``, arrays with their dtypes.
    """
    return _unpack(data, prefix, registry, where)
