"""The resource groups both clients carry (``client.keys``, ``client.usage``, ...), each written once."""

from __future__ import annotations

from typing import Any

from meterway.sdk._resources.audit import Audit
from meterway.sdk._resources.batches import Batches
from meterway.sdk._resources.billing import Periods, Prices, Usage
from meterway.sdk._resources.endpoints import Endpoints
from meterway.sdk._resources.files import Files
from meterway.sdk._resources.fine_tunes import FineTunes
from meterway.sdk._resources.keys import Keys
from meterway.sdk._resources.tenants import Tenants


class ResourceGroups:
    """One instance of each resource group, bound to ``client``."""

    def __init__(self, client: Any) -> None:
        self.keys = Keys(client)
        self.tenants = Tenants(client)
        self.prices = Prices(client)
        self.usage = Usage(client)
        self.periods = Periods(client)
        self.fine_tunes = FineTunes(client)
        self.endpoints = Endpoints(client)
        self.batches = Batches(client)
        self.files = Files(client)
        self.audit = Audit(client)
