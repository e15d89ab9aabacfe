"""Imports point downward only (design.md layers); a layer reaching upward fails here."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "bleepstore"

LAYER = {"errors": 0, "model": 0, "cpus": 0, "s3": 1, "metadata": 2, "storage": 2, "events": 2,
         "config": 2, "core": 3, "credentials": 3, "web": 4, "logs": 4, "app": 5, "runtime": 5,
         "recovery": 5, "cli": 5, "wsgi": 5, "gunicorn_conf": 5, "gunicorn_worker": 5,
         "gunicorn_response": 5, "datadir_lock": 5, "cluster": 5}
FORBIDDEN_IN_S3 = {"falcon", "sqlite3", "os", "socket", "boto3", "botocore", "subprocess"}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "bleepstore" or len(parts) < 2:
        return None
    return LAYER.get(parts[1])


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_every_module_has_a_layer() -> None:
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        if rel == ("__init__.py",):
            continue
        assert rel[0].removesuffix(".py") in LAYER, f"{path} has no layer"


def test_imports_point_downward() -> None:
    problems = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        own = LAYER.get(rel[0].removesuffix(".py"))
        if own is None:
            continue
        for name in _imports(path):
            target = _layer(name)
            if target is not None and target > own:
                problems.append(f"{'/'.join(rel)} (L{own}) imports {name} (L{target})")
    assert problems == []


def test_s3_protocol_code_is_sans_io() -> None:
    problems = []
    for path in (PKG / "s3").glob("*.py"):
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN_IN_S3:
                problems.append(f"s3/{path.name} imports {name}")
    assert problems == []
