"""The OpenAPI document's truth about errors: every status code a route can answer, one error schema.

Each route is documented (at the composition root, ``document_errors``) with the codes it can answer and
OpenAI's error body for all of them, instead of litestar's default validation-error shape; inference routes
also document the headers meterway adds (``x-ratelimit-*``, ``x-meterway-model-state``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.datastructures import ResponseHeader
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType
from litestar.openapi.spec import Schema as SchemaObject
from msgspec import Struct

if TYPE_CHECKING:
    from collections.abc import Iterable

    from litestar import Litestar
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.handlers import HTTPRouteHandler
    from litestar.openapi.spec import Schema
    from litestar.typing import FieldDefinition


class ErrorDetail(Struct, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(Struct, kw_only=True):
    """OpenAI's error body: the one shape of every error meterway answers."""

    error: ErrorDetail


_MEANINGS = {
    400: "Invalid request: a field is missing, malformed or not supported (``param`` names it)",
    401: "No API key, or an invalid, revoked or expired one (or token); a key or a token the endpoint's "
         "auth_mode does not take",
    402: "The key's or tenant's budget is exhausted (``insufficient_quota``)",
    403: "The caller may not do this: its role lacks the route's permission (admin routes need the admin), or "
         "the model or endpoint is outside the key's scope",
    404: "No such resource, or not visible to this key",
    409: "Conflicts with the resource's current state",
    413: "The request body is larger than the server accepts",
    415: "The body is not of a media type this route accepts",
    429: "Rate limited or the model's queue is full; ``Retry-After`` says when to retry",
    503: "The model is loading, usage cannot be recorded or the database is unreachable; ``Retry-After`` says "
         "when to retry",
    504: "The generation ran past the server's time limit",
}
_INFERENCE = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
_CONFLICTS = ("/v1/resumable_uploads", "/v1/fine_tuned_models", "/v1/prices", "/v1/endpoints", "/v1/billing/periods")
_OPEN = ("/health", "/metrics")

RATE_HEADERS = [
    ResponseHeader(name=name, description=text, documentation_only=True)
    for name, text in (
        ("x-ratelimit-limit-requests", "the key's requests per minute (OpenAI's header)"),
        ("x-ratelimit-remaining-requests", "requests left in the current minute"),
        ("x-ratelimit-reset-requests", "when the request window resets, e.g. 12s"),
        ("x-ratelimit-limit-tokens", "the key's tokens per minute"),
        ("x-ratelimit-remaining-tokens", "tokens left in the current minute"),
        ("x-ratelimit-reset-tokens", "when the token window resets"),
        ("x-meterway-model-state", "meterway extension: the model's state when the request arrived "
                                   "(cold, loading, ready)"),
    )
]


def error_codes(path: str, methods: Iterable[str]) -> tuple[int, ...]:
    """The error statuses a route can answer."""
    if path in _OPEN:
        return ()
    codes = {400, 401, 403, 404, 503}  # 503: the database unreachable (keys, tenants, prices live there)
    if set(methods) & {"POST", "PUT", "PATCH"}:
        codes |= {413, 415}
    if path in _INFERENCE:
        codes |= {402, 429}
        if path != "/v1/embeddings":
            codes.add(504)
    if path.startswith(_CONFLICTS) or path.endswith("/identity"):  # an issuer another tenant has
        codes.add(409)
    return tuple(sorted(codes))


def document_errors(handlers: Iterable[HTTPRouteHandler]) -> None:
    """Give every handler its error responses, all with OpenAI's error body."""
    for handler in handlers:
        for path in handler.paths:
            specs = {code: ResponseSpec(data_container=ErrorBody, description=_MEANINGS[code],
                                        generate_examples=False)
                     for code in error_codes(path, handler.http_methods)}
            handler.responses = {**specs, **(handler.responses or {})}


class StrictStructSchemas(StructSchemaPlugin):
    """Structs that refuse unknown fields say so: ``additionalProperties: false`` (litestar leaves it out)."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


def document_csv(app: Litestar, path: str, method: str = "get") -> None:
    """Add ``text/csv`` beside JSON to a route's documented 200 response (``format=csv``)."""
    operation = getattr(app.openapi_schema.paths[path], method)  # type: ignore[index]
    response = operation.responses["200"]
    if isinstance(response, OpenAPIResponse) and response.content is not None:
        response.content["text/csv"] = OpenAPIMediaType(schema=SchemaObject(type=OpenAPIType.STRING))


def accurate_components(app: Litestar) -> None:
    """Replace the documented schemas of request bodies (and the types they contain) by msgspec's own.

    litestar loses constraints inside ``X | None`` (a ``minimum`` of 0 disappears); msgspec's schema is the
    one the decoder enforces, so the document says exactly what is accepted.
    """
    bodies = {param.annotation for route in app.routes for handler in getattr(route, "route_handlers", ())
              if (param := handler.parsed_fn_signature.parameters.get("data")) is not None
              and isinstance(param.annotation, type) and issubclass(param.annotation, Struct)}
    _, exact = msgspec.json.schema_components(sorted(bodies, key=lambda t: t.__name__),
                                              ref_template="#/components/schemas/{name}")
    components = app.openapi_schema.components
    schemas = components.schemas if components is not None and components.schemas is not None else {}
    for name, schema in exact.items():
        if name in schemas:
            schemas[name] = schema  # type: ignore[assignment]  # a plain JSON Schema dict serialises as is
