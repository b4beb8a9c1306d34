"""Sphinx configuration of the wgflow documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (from the repository root, with the
``docs`` extra installed). Notebooks are rendered from their committed outputs; nothing is
executed during the build.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import wgflow  # noqa: E402

project = "wgflow"
author = "the wgflow authors"
copyright = "the wgflow authors, MIT licence"
release = wgflow.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
]

# --- sources ---------------------------------------------------------------------------------
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "api/generated/*.md"]
root_doc = "index"

# --- notebooks: copied from notebooks/ (the single source) and rendered with their outputs -----
nb_execution_mode = "off"
nb_merge_streams = True
NOTEBOOK_COPY = DOCS / "examples" / "notebooks"


def _copy_notebooks() -> None:
    """Mirror ``notebooks/*.ipynb`` into ``docs/examples/notebooks`` (ignored by git)."""
    NOTEBOOK_COPY.mkdir(parents=True, exist_ok=True)
    sources = {p.name: p for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    for old in NOTEBOOK_COPY.glob("*.ipynb"):
        if old.name not in sources:
            old.unlink()
    for name, src in sources.items():
        dst = NOTEBOOK_COPY / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)


_copy_notebooks()

# --- markdown --------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# the reference pages in docs/*.md start at level-1 headings and sometimes skip a level
suppress_warnings = ["myst.header"]

# --- API reference ---------------------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
# objects re-exported as ``wgflow.<name>`` are documented once, under that name; module pages
# link to them (templates in _templates/autosummary)
def _api_members() -> dict:
    """Per module of wgflow: which public members its page documents, and which it links to.

    Each object is documented once: under ``wgflow.<name>`` when it is re-exported at the top
    level (``wgflow.__all__``), otherwise on the page of the module that defines it. A module
    that re-exports a name defined elsewhere links to it.
    """
    import importlib
    import inspect
    import pkgutil

    top = {}
    for n in wgflow.__all__:
        obj = getattr(wgflow, n)
        if not inspect.ismodule(obj) and hasattr(obj, "__qualname__"):
            top[f"{obj.__module__}.{obj.__qualname__}"] = f"wgflow.{n}"
    out = {}
    names = ["wgflow"] + [m.name for m in pkgutil.walk_packages(wgflow.__path__, "wgflow.")]
    for modname in names:
        if any(part.startswith("_") for part in modname.split(".")):
            continue
        mod = importlib.import_module(modname)
        public = getattr(mod, "__all__", None)
        if public is None:
            public = [k for k, v in vars(mod).items() if not k.startswith("_")
                      and getattr(v, "__module__", None) == modname]
        entry = {"classes": [], "functions": [], "data": [], "linked": [], "submodules": []}
        if hasattr(mod, "__path__"):
            entry["submodules"] = [m.name for m in pkgutil.iter_modules(mod.__path__)
                                   if not m.name.startswith("_")]
        for n in public:
            obj = getattr(mod, n, None)
            if obj is None or inspect.ismodule(obj):
                continue
            canonical = f"{getattr(obj, '__module__', modname)}.{getattr(obj, '__qualname__', n)}"
            if canonical in top and modname != "wgflow":
                entry["linked"].append(top[canonical])
            elif (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ != modname:
                # autosummary wants names below the current module relative to it
                entry["linked"].append(canonical.removeprefix(modname + "."))
            elif inspect.isclass(obj):
                entry["classes"].append(n)
            elif callable(obj):
                entry["functions"].append(n)
            else:
                entry["data"].append(n)
        out[modname] = entry
    return out


# The module list of the API reference is generated, so that a new module is never left out:
# the modules of wgflow from the lower layers to the upper ones, any module not named here last.
_MODULE_ORDER = ["errors", "validation", "grids", "kernels", "transport", "mobility", "plot", "mdp",
                 "problems", "policy", "particles", "objectives", "linalg", "h5", "evaluation",
                 "geometry", "geodesics", "flows", "hessian", "verify", "records", "config", "study",
                 "io", "sweep", "nn", "cli"]


def _write_module_list() -> None:
    import pkgutil

    found = [m.name for m in pkgutil.iter_modules(wgflow.__path__)
             if not m.name.startswith("_") and m.name != "version"]
    ordered = [m for m in _MODULE_ORDER if m in found] + sorted(set(found) - set(_MODULE_ORDER))
    text = "\n".join([
        "Modules", "=======", "",
        "Every module of the package, from the lower layers (grids, MDPs) to the upper ones",
        "(storage, plotting, command line). This page is generated by ``docs/conf.py``.", "",
        ".. autosummary::", "   :toctree: generated", "   :recursive:", "",
        *[f"   wgflow.{m}" for m in ordered], ""])
    target = DOCS / "api" / "modules.rst"
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


_write_module_list()
# stubs of a previous build may name objects that no longer exist: start from a clean slate
shutil.rmtree(DOCS / "api" / "generated", ignore_errors=True)

# read by the templates in _templates/autosummary
autosummary_context = {"api": _api_members()}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_custom_sections = [("Options", "params_style")]

# --- output ----------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"wgflow {release}"
# wide enough for the notebooks' 100-column code cells
html_theme_options = {"page_width": "1240px", "sidebar_width": "250px", "body_max_width": "none"}
html_static_path: list = []
templates_path = ["_templates"]
