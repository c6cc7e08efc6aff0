"""glibc malloc settings of `podbw run` (agent/service/malloc_tuning.py)."""

import ctypes
import ctypes.util

import pytest

from agent.service.malloc_tuning import ARENA_MAX, MMAP_THRESHOLD_BYTES, operator_tuned, tune_malloc


def _glibc() -> bool:
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or None).mallopt
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_ARENA_MAX": "4"},
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"},
        {"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=1:glibc.malloc.mmap_threshold=65536"},
    ],
)
def test_operator_settings_win(environ: dict[str, str]) -> None:
    assert operator_tuned(environ)
    assert tune_malloc(environ) == {}


def test_unrelated_environment_is_not_operator_tuning() -> None:
    assert not operator_tuned({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=1", "PATH": "/bin"})


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_applies_arena_max_and_fixed_mmap_threshold() -> None:
    assert tune_malloc({}) == {"arena_max": ARENA_MAX, "mmap_threshold_bytes": MMAP_THRESHOLD_BYTES}
