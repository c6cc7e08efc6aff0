"""agent/netlink/pyroute2_lean.py: IPRoute without pyroute2's package __init__, and the whole
library still there for whoever asks. Each case runs in a fresh interpreter (this one may have
imported pyroute2 already)."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_tc_gets_the_real_iproute_without_the_rest_of_pyroute2() -> None:
    out = run(
        """
        import sys
        from agent.netlink import pyroute2_lean
        assert pyroute2_lean.install()
        import agent.netlink.tc as tc
        from pyroute2 import IPRoute, protocols
        import pyroute2.iproute.linux
        assert IPRoute is pyroute2.iproute.linux.IPRoute
        assert tc.IPRoute is IPRoute and tc.protocols is protocols
        assert pyroute2_lean.is_lean(sys.modules["pyroute2"])
        print(sorted(m for m in ("pyroute2.ndb", "sqlite3", "psutil", "pyroute2.nftables") if m in sys.modules))
        """
    )
    assert out == "[]"


def test_other_names_load_the_whole_package() -> None:
    out = run(
        """
        import sys
        from agent.netlink import pyroute2_lean
        pyroute2_lean.install()
        import pyroute2
        from pyroute2 import IPRoute
        from pyroute2 import NDB  # not served lean: runs pyroute2's own __init__
        assert not pyroute2_lean.is_lean(pyroute2)
        assert pyroute2.IPRoute is IPRoute and "pyroute2.ndb" in sys.modules
        assert "IPRoute" in pyroute2.__all__ or IPRoute in pyroute2.modules
        try:
            pyroute2.no_such_name
        except AttributeError:
            print("ok")
        """
    )
    assert out == "ok"


def test_nothing_changes_when_pyroute2_is_already_imported() -> None:
    out = run(
        """
        import pyroute2
        from agent.netlink import pyroute2_lean
        print(pyroute2_lean.install(), pyroute2_lean.is_lean(pyroute2))
        """
    )
    assert out == "False False"
