"""The folder tree is the architecture, and imports only point one way.

Layers, from the bottom: the shared base (seg.errors, seg.paths, seg.adapters); the heads and the data pipeline (and the
public-set converters), which import nothing else of seg; the model (network, LightningModule, metrics,
schedules); then the three users of the model: running a job (seg.run), using a checkpoint (seg.inference) and
the head study (seg.study). No module of seg imports an entry point (train.py, eval.py, predict.py, scripts/).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from seg.paths import PROJECT_DIR

SEG = PROJECT_DIR / "seg"
BASE = {"seg", "seg.errors", "seg.paths", "seg.adapters"}  # adapters: the library internals relied on
# What each part may import from seg, besides itself and the base.
ALLOWED = {
    "seg.heads": set(),
    "seg.data": set(),
    "seg.prepare": {"seg.data"},
    "seg.model": {"seg.heads"},
    "seg.study": {"seg.heads", "seg.data", "seg.model"},
    "seg.inference": {"seg.heads", "seg.data", "seg.model"},
    "seg.run": {"seg.heads", "seg.data", "seg.model", "seg.inference", "seg.study"},
}
PARTS = sorted(ALLOWED, key=len, reverse=True)


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(name: str) -> str | None:
    return next((part for part in PARTS if name == part or name.startswith(part + ".")), None)


def seg_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name == "seg" or name.startswith("seg.")}


MODULES = sorted(SEG.rglob("*.py"))


def test_every_module_belongs_to_a_part_of_the_tree():
    loose = [module_name(p) for p in MODULES if module_name(p) not in BASE and part_of(module_name(p)) is None]
    assert not loose, f"modules outside the architecture's folders: {loose}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_one_way(path):
    own = part_of(module_name(path))
    allowed = BASE | ({own} | ALLOWED[own] if own else set())
    wrong = sorted(name for name in seg_imports(path) if name not in BASE and part_of(name) not in allowed)
    assert not wrong, f"{module_name(path)} ({own or 'base'}) imports {wrong}"
