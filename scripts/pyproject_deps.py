"""Print the requirements declared in pyproject.toml, one per line.

    python scripts/pyproject_deps.py [EXTRA ...]

prints ``[project] dependencies`` plus the listed optional-dependency extras. The Makefile
feeds this to ``pip install -r`` so the project's dependencies are installed without building
the (package-less) project itself.
"""

import sys
import tomllib
from pathlib import Path

pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
project = pyproject["project"]
requirements = list(project.get("dependencies", []))
extras = project.get("optional-dependencies", {})
for extra in sys.argv[1:]:
    if extra not in extras:
        sys.exit(f"pyproject.toml has no optional-dependencies extra {extra!r}")
    requirements += extras[extra]
print("\n".join(requirements))
