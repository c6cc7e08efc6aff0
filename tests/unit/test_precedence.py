"""The precedence of the annotations in force, key by key: file > the pod's own (API when it knows
the pod, else CRI) > the namespace's default."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from agent.model.annotations import ALL_KEYS
from agent.model.direction import Direction
from agent.model.precedence import NAMESPACE_DEFAULT_KEYS, LimitSource, rate_source, resolve

IN = "kubernetes.io/ingress-bandwidth"
EG = "kubernetes.io/egress-bandwidth"
IN_BURST = "podbw.io/ingress-burst"
EG_LAT = "podbw.io/egress-latency"
NS_IN = "podbw.io/default-ingress-bandwidth"
NS_EG = "podbw.io/default-egress-bandwidth"
NS_IN_BURST = "podbw.io/default-ingress-burst"
NS_EG_LAT = "podbw.io/default-egress-latency"
F, P, C, N = LimitSource.FILE, LimitSource.POD, LimitSource.CRI, LimitSource.NAMESPACE

# (what the case shows, cri, api (None: the API does not know the pod), namespace, file,
#  expected podbw annotations in force, expected sources)
CASES = [
    ("CRI alone", {IN: "10M"}, None, None, None, {IN: "10M"}, {IN: C}),
    ("nothing anywhere", {}, None, None, None, {}, {}),
    ("API's current value beats CRI's at creation", {IN: "10M"}, {IN: "50M"}, None, None, {IN: "50M"}, {IN: P}),
    ("removed through the API: CRI's value does not come back", {IN: "10M", EG: "5M"}, {EG: "5M"}, None, None,
     {EG: "5M"}, {EG: P}),
    ("API knows the pod without any podbw key: no limit", {IN: "10M"}, {}, None, None, {}, {}),
    ("file beats the API", {IN: "10M"}, {IN: "50M"}, None, {IN: "70M"}, {IN: "70M"}, {IN: F}),
    ("file beats CRI", {IN: "10M"}, None, None, {IN: "70M"}, {IN: "70M"}, {IN: F}),
    ("file per key: the other keys stay", {IN: "10M", EG: "5M"}, None, None, {EG: "6M"}, {IN: "10M", EG: "6M"},
     {IN: C, EG: F}),
    ("namespace default when the pod has none", {}, {}, {NS_IN: "1M"}, None, {IN: "1M"}, {IN: N}),
    ("namespace default under CRI's value too", {}, None, {NS_EG: "2M"}, None, {EG: "2M"}, {EG: N}),
    ("the pod's own value beats its namespace's default", {}, {IN: "9M"}, {NS_IN: "1M"}, None, {IN: "9M"}, {IN: P}),
    ("CRI's own value beats the namespace's default", {IN: "9M"}, None, {NS_IN: "1M"}, None, {IN: "9M"}, {IN: C}),
    ("file beats the namespace's default", {}, {}, {NS_IN: "1M"}, {IN: "3M"}, {IN: "3M"}, {IN: F}),
    ("per key: own rate, namespace burst", {}, {IN: "9M"}, {NS_IN: "1M", NS_IN_BURST: "64Ki"}, None,
     {IN: "9M", IN_BURST: "64Ki"}, {IN: P, IN_BURST: N}),
    ("per key: namespace rate, own latency", {}, {EG_LAT: "2ms"}, {NS_EG: "4M", NS_EG_LAT: "9ms"}, None,
     {EG: "4M", EG_LAT: "2ms"}, {EG: N, EG_LAT: P}),
    ("a pod key on a namespace means nothing", {}, {}, {IN: "1M"}, None, {}, {}),
    ("a default key on a pod means nothing", {NS_IN: "1M"}, {NS_IN: "1M"}, None, None, {}, {}),
    ("an invalid value is still the one in force", {IN: "10M"}, {IN: "10Mbps"}, {NS_IN: "1M"}, None,
     {IN: "10Mbps"}, {IN: P}),
    ("an empty file entry overrides nothing", {IN: "10M"}, None, None, {}, {IN: "10M"}, {IN: C}),
]


@pytest.mark.parametrize(
    "cri, api, namespace, file, expected, sources",
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_precedence_table(cri, api, namespace, file, expected, sources) -> None:
    resolved = resolve(cri, api, namespace, file)
    assert {k: v for k, v in resolved.annotations.items() if k in ALL_KEYS} == expected
    assert resolved.sources == sources


def test_other_annotations_are_cri_and_the_files() -> None:
    cri = {"app.example/team": "web", IN: "10M"}
    resolved = resolve(cri, {"app.example/team": "from-api", IN: "20M"}, None, {"note": "x"})
    assert resolved.annotations == {"app.example/team": "web", "note": "x", IN: "20M"}


def test_inputs_are_not_modified() -> None:
    cri = MappingProxyType({IN: "10M"})
    api, namespace, file = {EG: "5M"}, {NS_IN: "1M"}, {EG: "6M"}
    resolve(cri, api, namespace, file)
    assert (dict(cri), api, namespace, file) == ({IN: "10M"}, {EG: "5M"}, {NS_IN: "1M"}, {EG: "6M"})


def test_every_pod_key_has_a_namespace_default() -> None:
    assert NAMESPACE_DEFAULT_KEYS == {
        "kubernetes.io/ingress-bandwidth": "podbw.io/default-ingress-bandwidth",
        "kubernetes.io/egress-bandwidth": "podbw.io/default-egress-bandwidth",
        "podbw.io/ingress-burst": "podbw.io/default-ingress-burst",
        "podbw.io/egress-burst": "podbw.io/default-egress-burst",
        "podbw.io/ingress-latency": "podbw.io/default-ingress-latency",
        "podbw.io/egress-latency": "podbw.io/default-egress-latency",
    }


@pytest.mark.parametrize(
    "sources, direction, expected",
    [
        ({IN: P, EG: N}, Direction.INGRESS, "pod"),
        ({IN: P, EG: N}, Direction.EGRESS, "namespace"),
        ({IN_BURST: F}, Direction.INGRESS, None),  # a burst alone asks for no limit
        ({}, Direction.EGRESS, None),
    ],
)
def test_rate_source_is_the_rate_keys(sources, direction, expected) -> None:
    source = rate_source(sources, direction)
    assert source == expected and (source is None or type(source) is str)
