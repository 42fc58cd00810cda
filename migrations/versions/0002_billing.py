"""billing tables (owned by the billing package): usage outbox, ledger, prices, periods, statements, Stripe.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _exact() -> sa.types.TypeEngine:
    # Mirrors meterway.tables.ExactDecimal: exact NUMERIC on PostgreSQL, a decimal string on SQLite.
    return sa.Numeric(38, 18).with_variant(sa.String(64), "sqlite")


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                     autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "usage_outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_entries",
        _id(),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=False, index=True),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("base_model", sa.String(128), nullable=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("input_per_million", _exact(), nullable=False),
        sa.Column("output_per_million", _exact(), nullable=False),
        sa.Column("cost", _exact(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("usage_day", sa.String(10), nullable=False),
        sa.Column("usage_hour", sa.String(13), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("billable", sa.Boolean, nullable=False),
        sa.Column("period", sa.String(7), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "prices",
        _id(),
        sa.Column("model", sa.String(128), nullable=False, index=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("input_per_million", _exact(), nullable=False),
        sa.Column("output_per_million", _exact(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model", "effective_from"),
    )
    op.create_table(
        "closed_periods",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "statements",
        _id(),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", _exact(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("lines", sa.Text, nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("period", "tenant"),
    )
    op.create_table(
        "stripe_exports",
        sa.Column("identifier", sa.String(100), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False, index=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("usage_hour", sa.String(13), nullable=False),
        sa.Column("token_type", sa.String(8), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("stripe_customer_id", sa.String(255), nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("tenant", "model", "usage_hour", "token_type", "seq"),
    )


def downgrade() -> None:
    tables = ("stripe_exports", "statements", "closed_periods", "prices", "ledger_entries", "usage_outbox")
    for table in tables:
        op.drop_table(table)
