"""ORM tables of endpoints and their deployments (migrated by 0006; endpoint keys by 0007; dedicated capacity
and deployment descriptions by 0010; a batch endpoint's default deployment by 0013;
auth modes past ``key`` by 0014)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from meterway.tables import Base


class EndpointRow(Base):
    """An endpoint: its name is global (it is part of the scoring URL), its owner one tenant."""

    __tablename__ = "endpoints"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(256))
    auth_mode: Mapped[str] = mapped_column(String(16))  # key, token, key_or_token (0014)
    traffic: Mapped[dict[str, Any]] = mapped_column(JSON)  # deployment -> percent, sums to 100 or empty
    mirror_traffic: Mapped[dict[str, Any]] = mapped_column(JSON)  # deployment -> percent, sum <= 50
    primary_nonce: Mapped[str] = mapped_column(String(32))  # endpoint keys derive from these (endpoints.keys)
    secondary_nonce: Mapped[str] = mapped_column(String(32))
    max_concurrency: Mapped[int | None] = mapped_column(Integer)  # over all its deployments (None: unlimited)
    default_deployment: Mapped[str | None] = mapped_column(String(32))  # kind batch: where new jobs run
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeploymentRow(Base):
    """A deployment of one model behind one endpoint."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("endpoint", "name"),)

    id: Mapped[str] = mapped_column(String(72), primary_key=True)  # <endpoint>/<name>
    endpoint: Mapped[str] = mapped_column(String(32), ForeignKey("endpoints.name", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(256), server_default="")
    capacity: Mapped[str] = mapped_column(String(16))  # "serverless" (the shared pool) or "dedicated"
    # Dedicated capacity: a fixed instance_count, or autoscaling between min and max instances (None: unset).
    instance_type: Mapped[str | None] = mapped_column(String(32))
    instance_count: Mapped[int | None] = mapped_column(Integer)
    min_instances: Mapped[int | None] = mapped_column(Integer)
    max_instances: Mapped[int | None] = mapped_column(Integer)
    target_concurrency: Mapped[int | None] = mapped_column(Integer)  # requests in flight per instance
    cooldown_s: Mapped[int | None] = mapped_column(Integer)  # how long load stays low before scaling in
    rpm: Mapped[int | None] = mapped_column(Integer)  # the deployment's own limits (None: unlimited)
    tpm: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
