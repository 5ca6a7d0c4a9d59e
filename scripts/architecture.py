"""Print the package-level import graph of dag_factory as a mermaid flowchart (docs/architecture.md).

`python scripts/architecture.py` prints it; tests/test_architecture.py checks the page shows the
graph the code really has.
"""

from __future__ import annotations

import grimp

# top to bottom, as the layers contract in pyproject.toml orders them
PACKAGES = (
    "cli", "local", "review", "scaffold", "ops", "airflow", "deliver", "compute", "plan", "validate", "load",
    "spec",
)  # fmt: skip


def package_edges() -> list[tuple[str, str]]:
    graph = grimp.build_graph("dag_factory")
    edges = set()
    for source in PACKAGES:
        for target in PACKAGES:
            if source != target and graph.direct_import_exists(
                importer=f"dag_factory.{source}", imported=f"dag_factory.{target}", as_packages=True
            ):
                edges.add((source, target))
    return sorted(edges, key=lambda e: (PACKAGES.index(e[0]), PACKAGES.index(e[1])))


def mermaid() -> str:
    lines = ["flowchart TD"]
    lines += [f"    {source} --> {target}" for source, target in package_edges()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(mermaid(), end="")
