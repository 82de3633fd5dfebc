"""Code versions for store keys: what a module *does*, not how it is commented.

A store key must change when the code that computes an item changes, and only then. The version of a module
is the digest of its abstract syntax tree with docstrings removed (comments never reach the AST), so a
comment or docstring edit keeps every key and a rerun job finds all its items in the store. The versions of
the libraries that produce the item's bytes (Pillow's resampling and PNG encoder, torch's kernels) are part of
it too: a different library build may give different bytes.

Modules are located and parsed without being imported, so computing a version never pulls in torch.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Sequence
from functools import cache


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """The tree without the docstring of the module and of each class and function."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def source_version(source: str, filename: str = "<source>") -> str:
    """Digest of Python source text, insensitive to comments, docstrings and layout."""
    tree = _strip_docstrings(ast.parse(source, filename=filename))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode("utf-8")).hexdigest()


@cache
def module_version(module: str) -> str:
    """Digest of an importable module's source (see `source_version`), found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"module {module!r} has no Python source to version")
    with open(spec.origin, encoding="utf-8") as handle:
        return source_version(handle.read(), spec.origin)


def library_versions(distributions: Sequence[str]) -> dict[str, str]:
    """Installed version of each distribution (`absent` for one that is not installed)."""
    versions = {}
    for name in distributions:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def code_version(modules: Sequence[str], distributions: Sequence[str] = ()) -> str:
    """One digest over the versions of `modules` and of the installed `distributions`."""
    document = {
        "modules": {module: module_version(module) for module in sorted(modules)},
        "libraries": library_versions(sorted(distributions)),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode("utf-8")).hexdigest()
