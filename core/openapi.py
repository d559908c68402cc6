"""The OpenAPI schema of the async endpoints (core.api.async_endpoint), which drf-spectacular does
not see: a postprocessing hook describes each from the scopes and body schemas it is declared
with, so the schema and the checks come from one place. The same hook documents the API's error
replies (core.api's error body) on every operation."""

from __future__ import annotations

import enum
import re
import typing

import pydantic
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.utils import OpenApiParameter
from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer

from core.api import AsyncEndpointDoc

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}
ERRORS = {
    "400": "Bad input: see `error.fields`",
    "401": "No key or login",
    "403": "Missing scope, or not this agent",
    "404": "Not found",
    "413": "Body larger than the limit",
    "415": "Not JSON",
}


def add_async_endpoints(result: dict, generator, request, public) -> dict:
    """drf-spectacular's POSTPROCESSING_HOOKS entry: the async endpoints, then the error replies
    of every operation (DRF's views answer them too, through core.api.exception_handler)."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR
    for path, callback in _endpoints(get_resolver().url_patterns, "/"):
        doc: AsyncEndpointDoc = callback.api
        names = re.findall(r"{(\w+)}", path)
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]
        item = result.setdefault("paths", {}).setdefault(path, {})
        for method, scope in doc.scopes.items():
            summary, _, description = doc.doc.strip().partition("\n")
            operation = {
                "operationId": f"{callback.__name__}_{method.lower()}",
                "summary": summary,
                "description": f"{description.strip()}\n\nAgent keys need the `{scope}` scope.".strip(),
                "tags": [callback.__module__.split(".")[0]],
                "parameters": parameters,
                "security": [{"agentKey": []}, {"cookieAuth": []}],
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {}}}},
                    "201": {"description": "Created", "content": {"application/json": {"schema": {}}}},
                    **{code: _error(text) for code, text in ERRORS.items()},
                },
            }
            read, answered = doc.documented.get(method, (None, None))
            if body := doc.bodies.get(method) or read:
                operation["requestBody"] = {"content": {"application/json": {"schema": _schema(body, components)}}}
            if answered is not None:
                for code in ("200", "201"):
                    operation["responses"][code]["content"]["application/json"]["schema"] = _schema(answered, components)
            item[method.lower()] = operation
    for item in result["paths"].values():
        for operation in item.values():
            for code, text in ERRORS.items():
                operation["responses"].setdefault(code, _error(text))
    return result


def _endpoints(patterns, prefix: str):
    for pattern in patterns:
        route = prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            yield from _endpoints(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            for endpoint in getattr(pattern.callback, "endpoints", [pattern.callback]):  # core.api.by_method
                if hasattr(endpoint, "api"):
                    yield route, endpoint


def _schema(model, components: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _error(text: str) -> dict:
    return {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def query_parameters(schema: type[pydantic.BaseModel]) -> list[OpenApiParameter]:
    """The query parameters a pydantic schema checks, for a DRF view's extend_schema."""
    parameters = []
    for name, field in schema.model_fields.items():
        choices = [
            member.value
            for kind in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(kind, type) and issubclass(kind, enum.Enum)
            for member in kind
        ]
        parameters.append(OpenApiParameter(name, str, required=field.is_required(), enum=choices or None))
    return parameters


class SchemaView(SpectacularAPIView):
    """/api/schema/: the OpenAPI schema (YAML; JSON with ?format=json). A refusal (a 429 past
    API_RATE_LIMIT) is answered in the API's JSON error body, as at every other endpoint."""

    def finalize_response(self, request, response, *args, **kwargs):
        if response.status_code >= 400:
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
