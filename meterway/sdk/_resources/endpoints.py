"""``client.endpoints``: online endpoints, their deployments and their keys (Azure ML's shape)."""

from __future__ import annotations

from typing import Any

from meterway.sdk._resources._base import Resource
from meterway.sdk._types import Deleted, Deployment, Endpoint


class Deployments(Resource):
    """``client.endpoints.deployments``: the deployments behind one endpoint."""

    def put(self, endpoint: str, name: str, **spec: Any) -> Deployment:
        """Create or replace a deployment (model, capacity, instance_type, instance_count, rpm, ...)."""
        return self._one(Deployment, "PUT", f"/v1/endpoints/{endpoint}/deployments/{name}", json=spec)

    def get(self, endpoint: str, name: str) -> Deployment:
        """One deployment with its live state."""
        return self._one(Deployment, "GET", f"/v1/endpoints/{endpoint}/deployments/{name}")

    def delete(self, endpoint: str, name: str) -> Deleted:
        """Delete a deployment that takes no traffic (409 otherwise)."""
        return self._deleted("DELETE", f"/v1/endpoints/{endpoint}/deployments/{name}")

    def logs(self, endpoint: str, name: str, *, lines: int | None = None) -> list[str]:
        """The last ``lines`` log lines of a dedicated deployment, oldest first."""
        path = f"/v1/endpoints/{endpoint}/deployments/{name}/logs"
        return self._value("GET", path, _data, params={"lines": lines})  # type: ignore[no-any-return]


class Endpoints(Resource):
    """Create, list, read and delete endpoints; list and regenerate their keys."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.deployments = Deployments(client)

    def put(self, name: str, **settings: Any) -> Endpoint:
        """Create or replace an endpoint (kind, description, auth_mode, traffic, mirror_traffic, ...)."""
        return self._one(Endpoint, "PUT", f"/v1/endpoints/{name}", json=settings)

    def list(self) -> list[Endpoint]:
        """The caller's endpoints (every tenant's for the admin)."""
        return self._list(Endpoint, "/v1/endpoints")

    def get(self, name: str) -> Endpoint:
        """One endpoint with its deployments and its ``scoring_uri``."""
        return self._one(Endpoint, "GET", f"/v1/endpoints/{name}")

    def delete(self, name: str) -> Deleted:
        """Delete an endpoint and its deployments."""
        return self._deleted("DELETE", f"/v1/endpoints/{name}")

    def keys(self, name: str) -> dict[str, str]:
        """The endpoint's ``primary_key`` and ``secondary_key``."""
        return self._value("POST", f"/v1/endpoints/{name}/keys", dict)  # type: ignore[no-any-return]

    def regenerate_key(self, name: str, key_type: str = "primary") -> dict[str, str]:
        """Replace one of the two keys (``primary`` / ``secondary``); the other keeps working."""
        path = f"/v1/endpoints/{name}/keys/regenerate"
        return self._value("POST", path, dict, json={"key_type": key_type})  # type: ignore[no-any-return]


def _data(body: dict[str, Any]) -> list[str]:
    return list(body.get("data", []))
