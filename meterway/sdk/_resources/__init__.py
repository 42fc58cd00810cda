"""The resource groups both clients carry (``client.keys``, ``client.usage``, ...), each written once."""

from __future__ import annotations

from typing import Any


class ResourceGroups:
    """Attaches one instance of each resource group to ``client``."""

    def __init__(self, client: Any) -> None:
        self._client_ref = client
