"""No import cycles among synthset's modules, over the import graph grimp builds (the one lint-imports reads).

A cycle inside a package comes from a module that mixes shared types with a dispatcher that imports the
modules using those types; it makes import order matter and hides layering. Every import counts, lazy
ones inside functions and `TYPE_CHECKING` ones included. grimp finds the package on the path, so the graph
is built in a child process whose path starts at the tree under test (the repo, or a scratch copy).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import REPO

# Each cycle as [module, what it imports, ..., module]; one per set of modules (the reverse walk is the same cycle).
FIND_CYCLES = """
import json, grimp
graph = grimp.build_graph("synthset", cache_dir=None)
cycles, seen = [], set()
for module in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(module)):
        chain = graph.find_shortest_chain(importer=imported, imported=module)
        if chain and frozenset(chain) not in seen:
            seen.add(frozenset(chain))
            cycles.append([module, *chain])
print(json.dumps(cycles))
"""


def import_cycles(root: Path) -> list[list[str]]:
    """The import cycles of the `synthset` package under `root`."""
    result = subprocess.run(
        [sys.executable, "-c", FIND_CYCLES], cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root)}
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_package_has_no_import_cycle() -> None:
    cycles = import_cycles(REPO)
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_an_added_cycle_is_found(tmp_path: Path) -> None:
    """The schema module importing its package's dispatcher (the cycle classes/ had) is reported, and every
    cycle reported goes through that added import."""
    shutil.copytree(REPO / "synthset", tmp_path / "synthset", ignore=shutil.ignore_patterns("__pycache__"))
    info = tmp_path / "synthset" / "classes" / "info.py"
    info.write_text(info.read_text() + "\nfrom synthset.classes import load_class_set  # noqa\n")
    cycles = import_cycles(tmp_path)
    assert ["synthset.classes", "synthset.classes.info", "synthset.classes"] in cycles
    for cycle in cycles:
        assert ("synthset.classes.info", "synthset.classes") in zip(cycle, cycle[1:], strict=False), cycle
