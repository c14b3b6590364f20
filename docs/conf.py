"""Sphinx configuration for refbinn's API reference.

Build (the docs extra: sphinx, numpydoc, myst-parser), warnings as errors as in .ci/run::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# This tree's refbinn, even where another copy is installed; and the local extension.
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "_ext"))

import refbinn  # noqa: E402

project = "refbinn"
author = "refbinn authors"
copyright = "refbinn authors, MIT licence"
version = release = refbinn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",           # numpydoc Parameters / Returns sections
    "myst_parser",        # the Markdown pages (trace format, VISPA, architecture)
    "cli_help",           # docs/_ext/cli_help.py: the refbinn --help texts, generated at build time
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# A broken cross-reference (:func:`...`, :class:`...`) is a warning, hence an error with -W.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|numba|pathlib|argparse|typing)\..*"),   # third-party, not linked
]
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"                 # types live in the numpydoc sections
numpydoc_show_class_members = False        # autodoc lists the members; no autosummary tables
numpydoc_class_members_toctree = False
myst_heading_anchors = 3                   # "#section" links inside the Markdown pages

html_theme = "alabaster"
html_theme_options = {"description": "BayesBiNN and its baselines, in NumPy", "fixed_sidebar": True}
