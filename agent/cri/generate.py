"""(Re)generate the committed protobuf stubs from runtime.proto: `python -m agent.cri.generate`.

protoc runs in-process through grpc_tools (a test-only dependency, hence the lazy import), so
the agent itself never needs it. The proto is compiled as `agent/cri/runtime.proto`, relative
to the repository root, so its descriptor has a name no other library registers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_ROOT = _PACKAGE_DIR.parent.parent
_PROTO_RELATIVE = "agent/cri/runtime.proto"
GENERATED_FILES = ("runtime_pb2.py", "runtime_pb2.pyi")


class GenerateError(Exception):
    """protoc rejected the proto file."""


def generated_sources() -> dict[str, str]:
    """Run protoc on runtime.proto and return {file name: text} of the stubs it writes."""
    from grpc_tools import protoc  # test/dev-only dependency

    with tempfile.TemporaryDirectory(prefix="podbw-protoc-") as out_dir:
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={_SOURCE_ROOT}",
                f"--python_out={out_dir}",
                f"--pyi_out={out_dir}",
                str(_SOURCE_ROOT / _PROTO_RELATIVE),
            ]
        )
        if rc != 0:
            raise GenerateError(f"protoc failed on {_PROTO_RELATIVE} (exit status {rc})")
        generated_dir = Path(out_dir) / Path(_PROTO_RELATIVE).parent
        return {name: (generated_dir / name).read_text(encoding="utf-8") for name in GENERATED_FILES}


def write_sources() -> list[Path]:
    """Write the generated stubs next to runtime.proto; return the paths written."""
    written = []
    for name, text in generated_sources().items():
        path = _PACKAGE_DIR / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    for path in write_sources():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
