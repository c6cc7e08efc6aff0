"""Fuzzing CRI-O's and containerd's verbose info: whatever a runtime sends, only CriInfoError
escapes."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.cri.errors import CriInfoError
from agent.cri.info import netns_path_from_info

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

# Documents shaped like CRI-O's, with any value anywhere: the parser must not trust the shape.
CRIO_LIKE = st.fixed_dictionaries(
    {
        "runtimeSpec": st.one_of(
            JSON_VALUES,
            st.fixed_dictionaries(
                {
                    "linux": st.one_of(
                        JSON_VALUES,
                        st.fixed_dictionaries(
                            {"namespaces": st.one_of(JSON_VALUES, st.lists(st.one_of(JSON_VALUES, st.fixed_dictionaries({"type": st.sampled_from(["network", "ipc", 7]), "path": JSON_VALUES})), max_size=4))}
                        ),
                    )
                }
            ),
        )
    }
)

# containerd's additions, with any value anywhere, beside a CRI-O-like runtimeSpec.
CONTAINERD_LIKE = st.fixed_dictionaries(
    {
        "netNamespaceClosed": st.one_of(st.booleans(), JSON_VALUES),
        "sandboxMetadata": st.one_of(
            JSON_VALUES,
            st.fixed_dictionaries(
                {"Version": JSON_VALUES, "Metadata": st.one_of(JSON_VALUES, st.fixed_dictionaries({"NetNSPath": JSON_VALUES}))}
            ),
        ),
    },
    optional={"runtimeSpec": CRIO_LIKE.map(lambda document: document["runtimeSpec"])},
)


def check(info: dict) -> None:
    try:
        result = netns_path_from_info(info)
    except CriInfoError:
        return
    assert result is None or isinstance(result, str)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=200), max_size=3))
def test_arbitrary_info_maps(info: dict) -> None:
    check(info)


@settings(max_examples=300, deadline=None)
@given(CRIO_LIKE)
def test_crio_shaped_documents_with_any_values(document: dict) -> None:
    check({"info": json.dumps(document)})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_info(blob: bytes) -> None:
    check({"info": blob.decode("utf-8", "replace")})


@settings(max_examples=300, deadline=None)
@given(CONTAINERD_LIKE)
def test_containerd_shaped_documents_with_any_values(document: dict) -> None:
    check({"info": json.dumps(document)})
