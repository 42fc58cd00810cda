"""``meterway endpoints ...``: apply endpoint and deployment specs (YAML shaped like Azure ML's), invoke one.

Client-side commands like ``meterway models``: they talk to ``METERWAY_URL`` with ``METERWAY_API_KEY``. With
``--local`` the same requests go to the embedded default app (SQLite under ``METERWAY_HOME``) built in this
process with the local admin key, so that a spec can be tried before it reaches a shared server.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from meterway import APIError, NotFoundError
from service.cli_client import client, print_json

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Mapping

    from meterway import Client
    from meterway.settings import Settings

    Prepare = Callable[[Settings], None]

# A spec is the resource as it should be: limits it leaves out are unset by ``apply`` (traffic is kept).
ENDPOINT_KEYS = frozenset({"name", "kind", "description", "auth_mode", "traffic", "mirror_traffic",
                           "max_concurrency"})
# The reference design's capacity fields: a spec with instances and no ``capacity`` is a dedicated deployment.
INSTANCE_KEYS = frozenset({"instance_type", "instance_count", "min_instances", "max_instances",
                           "target_concurrency", "cooldown_s"})
DEPLOYMENT_KEYS = frozenset({"name", "endpoint_name", "model", "capacity", "description", "rpm", "tpm",
                             "max_concurrency", *INSTANCE_KEYS})
SCHEMA = "$schema"  # the reference design's pointer to its JSON schema, for editors: not part of the resource
WEIGHTS = ("traffic", "mirror_traffic")
LOCAL_TENANT = "local"


@dataclass(frozen=True)
class Spec:
    """One YAML document: an endpoint, or (with ``endpoint``) one of its deployments; ``body`` is its PUT body."""

    source: Path
    name: str
    body: dict[str, Any]
    endpoint: str | None = None


def add_endpoint_commands(commands: Any, prepare: Prepare) -> None:
    """Register ``endpoints apply|invoke|list|get|delete|keys``; ``prepare`` migrates the ``--local`` database."""
    endpoints = commands.add_parser("endpoints", help="online endpoints and deployments (through the server)")
    verbs = endpoints.add_subparsers(title="endpoints")
    apply = _verb(verbs, "apply", "create or update endpoints and deployments from YAML specs", prepare)
    apply.add_argument("-f", "--file", dest="files", type=Path, action="append", required=True,
                       help="a YAML spec (several documents allowed); repeat for more files")
    apply.add_argument("--tenant", help=f"the endpoints' owner (admin key only; --local: {LOCAL_TENANT!r})")
    apply.set_defaults(action=lambda http, a: apply_specs(http, load_specs(a.files), _tenant(a)))
    invoke = _verb(verbs, "invoke", "call an endpoint with a JSON request file", prepare)
    invoke.add_argument("name")
    invoke.add_argument("--request-file", type=Path, required=True)
    invoke.add_argument("--deployment", help="pin this deployment (azureml-model-deployment)")
    invoke.add_argument("--path", default="chat/completions", help="chat/completions, completions or embeddings")
    invoke.set_defaults(action=lambda http, a: invoke_endpoint(http, a.name, a.request_file, a.deployment, a.path))
    _verb(verbs, "list", "list endpoints", prepare).set_defaults(
        action=lambda http, a: print_json(http.get("/v1/endpoints")))
    for verb, method, suffix in (("get", "GET", ""), ("delete", "DELETE", ""), ("keys", "POST", "/keys")):
        named = _verb(verbs, verb, f"{method} /v1/endpoints/NAME{suffix}", prepare)
        named.add_argument("name")
        named.set_defaults(action=_named(method, suffix))


def _verb(verbs: Any, name: str, help_text: str, prepare: Prepare) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = verbs.add_parser(name, help=help_text)
    parser.add_argument("--local", action="store_true", help="no server: the embedded default on this machine")
    parser.set_defaults(run=lambda a: _run(a, prepare))
    return parser


def _named(method: str, suffix: str) -> Callable[[Client, argparse.Namespace], Any]:
    return lambda http, a: print_json(http.request(method, f"/v1/endpoints/{a.name}{suffix}"))


def _tenant(args: argparse.Namespace) -> str | None:
    return args.tenant or (LOCAL_TENANT if args.local else None)


def _run(args: argparse.Namespace, prepare: Prepare) -> None:
    with _session(args.local, prepare) as http:
        args.action(http, args)


@contextmanager
def _session(local: bool, prepare: Prepare) -> Iterator[Client]:
    if not local:
        with client() as http:
            yield http
        return
    with local_client(prepare) as http:
        yield http


@contextmanager
def local_client(prepare: Prepare) -> Iterator[Client]:
    """The SDK over the embedded default app in this process (its lifespan running), with the local admin key."""
    from litestar.testing import TestClient
    from litestar.testing.transport import TestClientTransport

    from meterway import Client
    from meterway.settings import Settings
    from service.app import create_app
    from service.secrets import load_secrets

    settings = Settings.from_env()
    with redirect_stdout(sys.stderr):  # the app logs to stdout; here stdout carries the command's answer
        prepare(settings)
        app = create_app(settings)
    base_url = f"http://{settings.server.host}:{settings.server.port}"  # as `meterway serve` would report
    with TestClient(app, base_url=base_url, raise_server_exceptions=False, timeout=60) as app_client:
        transport = InProcess(TestClientTransport(app_client, raise_server_exceptions=False))
        with Client(base_url, load_secrets(settings).admin_key, transport=transport) as http:
            yield http


class InProcess(httpx.BaseTransport):
    """Litestar's in-process test transport as a complete httpx transport (it has no ``close``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)  # type: ignore[no-any-return]


def load_specs(paths: list[Path]) -> list[Spec]:
    """Every document of every file, checked: a key meterway does not know stops it, naming file and key."""
    specs: list[Spec] = []
    for path in paths:
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise SystemExit(f"meterway: {path}: {exc}") from None
        specs += [_spec(path, document) for document in documents if document is not None]
    return specs


def _spec(path: Path, document: object) -> Spec:
    if not isinstance(document, dict):
        raise SystemExit(f"meterway: {path}: a spec is a mapping, not {type(document).__name__}")
    kind, allowed = ("deployment", DEPLOYMENT_KEYS) if "endpoint_name" in document else ("endpoint", ENDPOINT_KEYS)
    unknown = sorted(str(key) for key in document if key not in allowed | {SCHEMA})
    if unknown:
        raise SystemExit(f"meterway: {path}: unknown {kind} key {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(sorted(allowed))})")
    required = ("name", "endpoint_name") if kind == "deployment" else ("name",)
    if not all(isinstance(document.get(key), str) and document[key] for key in required):
        raise SystemExit(f"meterway: {path}: a {kind} needs {' and '.join(required)} (strings)")
    body = {key: value for key, value in document.items() if key not in {"name", "endpoint_name", SCHEMA}}
    if kind == "deployment" and "capacity" not in body and INSTANCE_KEYS & set(body):
        body["capacity"] = "dedicated"
    return Spec(path, str(document["name"]), body, document.get("endpoint_name"))


def apply_specs(http: Client, specs: list[Spec], tenant: str | None) -> None:
    """Endpoints first (no traffic yet), then deployments, then each endpoint's traffic: no call sees a gap."""
    endpoints = [spec for spec in specs if spec.endpoint is None]
    current = {spec.name: _current(http, spec.name) for spec in endpoints}
    for spec in endpoints:
        if current[spec.name] is None:
            created = {key: value for key, value in spec.body.items() if key not in WEIGHTS}
            http.put(f"/v1/endpoints/{spec.name}", json=_owned(created, tenant))
    for spec in specs:
        if spec.endpoint is not None:
            shown = http.put(f"/v1/endpoints/{spec.endpoint}/deployments/{spec.name}", json=spec.body)
            print(f"deployment {spec.endpoint}/{spec.name}: {shown.get('state')} (model {shown.get('model')})")
    for spec in endpoints:
        before = current[spec.name] or {}
        kept = {key: before.get(key, {}) for key in WEIGHTS}  # PUT replaces: a weight the spec omits stays
        shown = http.put(f"/v1/endpoints/{spec.name}", json=_owned({**kept, **spec.body}, tenant))
        print(f"endpoint {spec.name}: {'updated' if before else 'created'}, traffic {json.dumps(shown['traffic'])}"
              f", scoring_uri {shown['scoring_uri']}")


def _current(http: Client, name: str) -> dict[str, Any] | None:
    try:
        return dict(http.get(f"/v1/endpoints/{name}"))
    except NotFoundError:
        return None


def _owned(body: dict[str, Any], tenant: str | None) -> dict[str, Any]:
    return {**body, "tenant": tenant} if tenant else body


def invoke_endpoint(http: Client, name: str, request_file: Path, deployment: str | None, path: str) -> None:
    """POST the request to the endpoint's scoring URI; the deployment that served goes to stderr."""
    try:
        request = json.loads(request_file.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"meterway: {request_file}: {exc}") from None
    headers = {"azureml-model-deployment": deployment} if deployment else {}
    try:
        with http.stream("POST", f"/endpoints/{name}/v1/{path.strip('/')}", json=request,
                         headers=headers) as response:
            _served(response.headers)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                sys.stdout.write(response.read().decode())  # a streamed answer ("stream": true) as it came
                return
            print_json(response.json() if response.read() else None)
    except APIError as exc:
        _served(exc.headers)
        raise


def _served(headers: Mapping[str, str]) -> None:
    if served := headers.get("x-meterway-deployment"):
        print(f"deployment: {served}", file=sys.stderr)
