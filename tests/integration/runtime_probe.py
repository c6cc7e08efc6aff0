"""Run by the runtime-only venv's Python (tests/integration/test_runtime_venv.py): imports each
module named on the command line and prints, as JSON, which distributions the imported
third-party packages come from."""

import importlib
import json
import sys
from importlib.metadata import packages_distributions

modules, packages = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in modules + packages:
    importlib.import_module(name)
owners = packages_distributions()
print(json.dumps({package: owners.get(package, []) for package in packages}))
