"""The Kubernetes API stand-in's errors, as the `Status` objects a real apiserver answers with
(apimachinery `pkg/api/errors`: reason, code, message and details in the same wording)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Resource:
    """What a request addresses: the API group ("" for core), plural resource name and Kind."""

    group: str
    version: str
    name: str
    kind: str

    @property
    def qualified(self) -> str:
        """`pods` for core, `events.events.k8s.io` for a group, as error messages name it."""
        return f"{self.name}.{self.group}" if self.group else self.name

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class FieldError:
    """One validation failure, as apimachinery's field.Error prints it."""

    path: str
    kind: str
    """Required, Invalid, Forbidden or NotSupported."""
    detail: str = ""
    value: Any = None

    REASONS = {
        "Required": "FieldValueRequired",
        "Invalid": "FieldValueInvalid",
        "Forbidden": "FieldValueForbidden",
        "NotSupported": "FieldValueNotSupported",
    }

    def message(self) -> str:
        if self.kind == "Required":
            text = "Required value"
        elif self.kind == "Invalid":
            text = f"Invalid value: {_go_quote(self.value)}"
        elif self.kind == "NotSupported":
            text = f"Unsupported value: {_go_quote(self.value)}"
        else:
            text = self.kind
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.path}: {self.message()}"


def _go_quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


@dataclass
class ApiError(Exception):
    """An error answered as a Status object with this HTTP code."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    retry_after_s: int | None = None

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            status["details"] = self.details
        status["code"] = self.code
        return status


def _details(resource: Resource | None, name: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if resource is not None:
        if resource.group:
            details["group"] = resource.group
        details["kind"] = resource.name
    return details


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found', _details(resource, name))


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed(verb: str, resource: Resource | None = None) -> ApiError:
    what = f"{resource.qualified}" if resource else "the requested resource"
    return ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({verb} {what})",
                    _details(resource))


def not_acceptable(accepted: list[str]) -> ApiError:
    return ApiError(406, "NotAcceptable", f"only the following media types are accepted: {', '.join(accepted)}")


def already_exists(resource: Resource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{resource.qualified} "{name}" already exists', _details(resource, name))


def conflict(resource: Resource, name: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(resource, name),
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_old_watch(resource_version: int, oldest: int) -> ApiError:
    """What the watch cache answers (as an ERROR event) for a resourceVersion it no longer has."""
    return expired(f"too old resource version: {resource_version} ({oldest})")


def too_large_resource_version(wanted: int, current: int) -> ApiError:
    return ApiError(
        504, "Timeout", f"Too large resource version: {wanted}, current: {current}",
        {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1},
        retry_after_s=1,
    )


def request_too_large(limit_bytes: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"limit is {limit_bytes}")


def unsupported_media_type(content_type: str, supported: list[str]) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format ({content_type!r}); accepted: {", ".join(supported)}')


def invalid(resource: Resource, name: str, errors: list[FieldError]) -> ApiError:
    text = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    details: dict[str, Any] = {"name": name}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.kind
    details["causes"] = [
        {"reason": FieldError.REASONS.get(e.kind, "FieldValueInvalid"), "message": e.message(), "field": e.path} for e in errors
    ]
    return ApiError(422, "Invalid", f'{resource.qualified_kind} "{name}" is invalid: {text}', details)


def internal_error(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
