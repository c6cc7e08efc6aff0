"""What pods a lab runs: PodSpec records, from a YAML spec file or `--pods N`.

```yaml
pods:
  - name: web            # with count: N → web-0 .. web-(N-1)
    namespace: shop      # default "default"
    count: 3
    annotations: {kubernetes.io/egress-bandwidth: 10M}
    labels: {app: web}
    hostNetwork: false
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from agent.lab.errors import LabError

GENERIC_NAMESPACE = "lab"
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str = "default"
    annotations: Mapping[str, str] = field(default_factory=dict)
    host_network: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, value in (("name", self.name), ("namespace", self.namespace)):
            if not _DNS_LABEL_RE.fullmatch(value):
                raise LabError(f"invalid pod {what} {value!r}: use lower-case letters, digits, '-' and '.'")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def generic_pods(count: int) -> list[PodSpec]:
    """`--pods N`: pod-0 .. pod-(N-1) in namespace "lab", no annotations."""
    if count < 0:
        raise LabError("--pods must be >= 0")
    return [PodSpec(name=f"pod-{i}", namespace=GENERIC_NAMESPACE) for i in range(count)]


def load_spec(path: str) -> list[PodSpec]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise LabError(f"cannot read spec {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise LabError(f"spec {path} is not valid YAML: {e}") from e
    return parse_spec(data, source=path)


def parse_spec(data: Any, source: str = "spec") -> list[PodSpec]:
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("pods", []), list):
        raise LabError(f"{source}: expected a mapping with a list under 'pods'")
    specs: list[PodSpec] = []
    for i, entry in enumerate(data.get("pods") or []):
        where = f"{source}: pods[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise LabError(f"{where}: each pod needs a 'name'")
        unknown = set(entry) - {"name", "namespace", "annotations", "labels", "hostNetwork", "count"}
        if unknown:
            raise LabError(f"{where}: unknown keys {sorted(unknown)}")
        annotations = _string_map(entry.get("annotations"), f"{where}.annotations")
        labels = _string_map(entry.get("labels"), f"{where}.labels")
        host_network = entry.get("hostNetwork", False)
        if not isinstance(host_network, bool):
            raise LabError(f"{where}.hostNetwork: expected true or false")
        count = entry.get("count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
            raise LabError(f"{where}.count: expected an integer >= 0")
        names = [entry["name"]] if count is None else [f"{entry['name']}-{n}" for n in range(count)]
        for name in names:
            specs.append(
                PodSpec(
                    name=name,
                    namespace=str(entry.get("namespace", "default")),
                    annotations=annotations,
                    host_network=host_network,
                    labels=labels,
                )
            )
    keys = [s.key for s in specs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise LabError(f"{source}: duplicate pods {duplicates}")
    return specs


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LabError(f"{where}: expected a mapping")
    # YAML turns `10` or `true` into numbers and booleans; Kubernetes values are strings.
    return {str(k): _yaml_scalar_to_str(v) for k, v in value.items()}


def _yaml_scalar_to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
