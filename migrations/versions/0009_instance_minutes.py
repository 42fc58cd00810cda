"""the instance-minute meter: instance prices, capacity columns on ledger entries, a wider Stripe token type.

Entries made before it are token entries: no instance minutes, no instance price. Ledger key ids widen to hold
"deployment:<endpoint>/<deployment>" (32 + 32 characters of names), Stripe export token types to hold
"instance_minutes".

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _exact() -> sa.types.TypeEngine:
    # Mirrors meterway.tables.ExactDecimal: exact NUMERIC on PostgreSQL, a decimal string on SQLite.
    return sa.Numeric(38, 18).with_variant(sa.String(64), "sqlite")


def upgrade() -> None:
    op.create_table(
        "instance_prices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False, index=True),
        sa.Column("instance_type", sa.String(32), nullable=False),
        sa.Column("per_minute", _exact(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model", "instance_type", "effective_from"),
    )
    with op.batch_alter_table("ledger_entries") as batch:
        batch.alter_column("key_id", type_=sa.String(80), existing_type=sa.String(40), existing_nullable=False)
        batch.add_column(sa.Column("instance_type", sa.String(32), nullable=True))
        batch.add_column(sa.Column("instance_minutes", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("per_instance_minute", _exact(), nullable=False, server_default="0"))
    with op.batch_alter_table("stripe_exports") as batch:
        batch.alter_column("token_type", type_=sa.String(16), existing_type=sa.String(8), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("stripe_exports") as batch:
        batch.alter_column("token_type", type_=sa.String(8), existing_type=sa.String(16), existing_nullable=False)
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("per_instance_minute")
        batch.drop_column("instance_minutes")
        batch.drop_column("instance_type")
        batch.alter_column("key_id", type_=sa.String(40), existing_type=sa.String(80), existing_nullable=False)
    op.drop_table("instance_prices")
