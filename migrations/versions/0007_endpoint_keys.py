"""endpoint keys (the nonces the primary and secondary keys derive from, endpoints.keys) and limits: each
deployment's RPM, TPM and concurrency, each endpoint's concurrency.

Revision ID: 0007
Revises: 0006
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
LIMITS = ("rpm", "tpm", "max_concurrency")


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("primary_nonce", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("secondary_nonce", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))
    with op.batch_alter_table("deployments") as batch:
        for limit in LIMITS:
            batch.add_column(sa.Column(limit, sa.Integer(), nullable=True))
    endpoints = sa.table("endpoints", sa.column("name", sa.String), sa.column("primary_nonce", sa.String),
                         sa.column("secondary_nonce", sa.String))
    connection = op.get_bind()
    for (name,) in connection.execute(sa.select(endpoints.c.name)).all():  # endpoints made before keys existed
        connection.execute(endpoints.update().where(endpoints.c.name == name).values(
            primary_nonce=secrets.token_hex(16), secondary_nonce=secrets.token_hex(16)))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        for limit in LIMITS:
            batch.drop_column(limit)
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("max_concurrency")
        batch.drop_column("secondary_nonce")
        batch.drop_column("primary_nonce")
