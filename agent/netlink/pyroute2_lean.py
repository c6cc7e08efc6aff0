"""Import pyroute2's IPRoute without the rest of pyroute2.

pyroute2's package `__init__` imports every API it has: NDB (and sqlite3), nftables, ipset,
IPVS, wireless, devlink, plan9, conntrack, ss2 (and psutil)... about 150 modules and 4.6 MiB of
resident memory in the agent, which uses IPRoute, `protocols` and a few netlink constants only
(agent/netlink/tc.py). `install()` puts a package module in `sys.modules["pyroute2"]` that
leaves `__init__` unrun: submodules import as usual, `pyroute2.IPRoute` comes straight from
`pyroute2.iproute`, and any other top-level name (`pyroute2.NDB`, `__all__`, ...) runs the real
`__init__` first, so code that wants the whole library still gets it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType

PACKAGE = "pyroute2"
LEAN_NAMES = {"IPRoute": "pyroute2.iproute"}
"""Names served without the package `__init__`: name -> module that defines it."""

_full_lock = threading.Lock()


def install() -> bool:
    """Install the lean package module; False when pyroute2 is already imported (or missing)."""
    if PACKAGE in sys.modules:
        return False
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    module = importlib.util.module_from_spec(spec)  # __path__ and __spec__ set, __init__ not run
    module.__getattr__ = lambda name: _lazy_attribute(module, name)  # type: ignore[method-assign]
    sys.modules[PACKAGE] = module
    return True


def is_lean(module: ModuleType) -> bool:
    """True while the real `__init__` has not run in `module`."""
    return "__getattr__" in vars(module)


def _lazy_attribute(module: ModuleType, name: str) -> object:
    if name in LEAN_NAMES:
        value = getattr(importlib.import_module(LEAN_NAMES[name]), name)
        setattr(module, name, value)
        return value
    if name.startswith("__") and name not in ("__all__", "__version__"):
        # Probes such as __wrapped__ or __path__-less lookups: not a reason to load everything.
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
    if importlib.util.find_spec(f"{PACKAGE}.{name}") is not None:
        # `from pyroute2 import protocols`: a submodule, imported on its own.
        return importlib.import_module(f"{PACKAGE}.{name}")
    _run_init(module)
    try:
        return vars(module)[name]
    except KeyError:
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None


def _run_init(module: ModuleType) -> None:
    with _full_lock:
        if not is_lean(module):
            return
        del module.__getattr__  # the real package has none
        try:
            module.__spec__.loader.exec_module(module)  # type: ignore[union-attr]
        except BaseException:
            module.__getattr__ = lambda name: _lazy_attribute(module, name)  # type: ignore[method-assign]
            raise
