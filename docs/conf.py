"""Sphinx configuration of gengrad's documentation: the Markdown pages of docs/ (MyST) and an API
reference generated from the docstrings of the installed package (pip install ".[docs]").
Built in CI with warnings as errors: sphinx-build -W -b html docs docs/_build/html."""

project = "gengrad"
author = "the gengrad developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signatures carry them; the rendered types of NumPy aliases are noise
html_theme = "alabaster"
