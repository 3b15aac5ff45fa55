"""Imports run one way: each module imports only from its own layer or the layers below (README,
"Layers"). Imports inside functions count too: they hide a cycle, they do not remove it.

`KNOWN` lists the imports that still go upward, each with the work that removes it (issue 15). The
test fails on any new upward import, and on a listed one that is gone (then strike it from the list).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("roadwork", "miner", "training", "cascade", "detectors", "consensus", "vlm_tiers", "monitoring")
LAYERS: tuple[tuple[str, ...], ...] = (
    # 0: what every part shares: vote and frame types, the profile's schema, pooling
    ("cascade.types", "cascade.config", "cascade.placement", "consensus"),
    # 1: adapters (models behind one interface) and observability
    ("detectors", "vlm_tiers", "monitoring", "roadwork.env", "roadwork.terminal"),
    # 2: the cascade that runs the adapters
    ("cascade",),
    # 3: the miner and the offline tools built on the cascade
    ("miner", "training"),
    # 4: entry points
    ("roadwork",),
)
KNOWN: set[tuple[str, str]] = set()
"""Upward imports still to remove, each with the work that removes it (none left)."""


def layer(module: str) -> int:
    """The layer of the longest matching prefix (cascade.config is 0, cascade.pipeline 2)."""
    best = max((p for names in LAYERS for p in names if module == p or module.startswith(p + ".")), key=len)
    return next(i for i, names in enumerate(LAYERS) if best in names)


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            me = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in PACKAGES and layer(name) > layer(me):
                        found.add((me, name))
    return found


def test_imports_only_go_down_the_layers():
    found = upward_imports()
    new = sorted(found - KNOWN)
    assert not new, f"imports that go up a layer (README, Layers): {new}"
    gone = sorted(KNOWN - found)
    assert not gone, f"fixed, so strike them from KNOWN: {gone}"


def test_every_package_has_a_layer():
    for package in PACKAGES:
        assert layer(package) >= 0
    assert layer("cascade.pipeline") == 2 and layer("cascade.types") == 0 and layer("roadwork.cli") == 4
