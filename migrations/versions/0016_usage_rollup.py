"""usage rollup: the ledger summed per (tenant, hour, model, key, endpoint, deployment, billable, meter, unit
prices), kept by the ledger writers from here on (ledger invariant 12); filled here from the entries so far.
A request's duration (start to last token) on each new ledger entry, summed in the rollup for mean latencies.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

GRAIN = ("tenant", "usage_hour", "model", "key_id", "endpoint_name", "deployment", "billable", "meter",
         "input_per_million", "output_per_million", "per_instance_minute", "currency")
METER = "CASE WHEN instance_minutes > 0 THEN 'instance_minutes' ELSE 'tokens' END"
# The same sums the writers add, over every entry already written.
BACKFILL = (
    f"INSERT INTO usage_rollups ({', '.join(GRAIN)}, usage_day, requests, prompt_tokens, completion_tokens, "
    "instance_minutes, timed_requests, duration_ms) "
    f"SELECT {', '.join(METER if name == 'meter' else name for name in GRAIN)}, MIN(usage_day), "
    "SUM(CASE WHEN instance_minutes = 0 THEN 1 ELSE 0 END), SUM(prompt_tokens), SUM(completion_tokens), "
    f"SUM(instance_minutes), 0, 0 FROM ledger_entries GROUP BY {', '.join(METER if n == 'meter' else n for n in GRAIN)}"
)


def _decimal() -> sa.types.TypeEngine:
    return sa.Numeric(38, 18).with_variant(sa.String(64), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("duration_ms", sa.Integer(), nullable=True))  # none for older entries
    op.create_table(
        "usage_rollups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("usage_day", sa.String(10), nullable=False),
        sa.Column("usage_hour", sa.String(13), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(80), nullable=False),
        sa.Column("endpoint_name", sa.String(32), nullable=False),
        sa.Column("deployment", sa.String(32), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.Column("meter", sa.String(16), nullable=False),
        sa.Column("input_per_million", _decimal(), nullable=False),
        sa.Column("output_per_million", _decimal(), nullable=False),
        sa.Column("per_instance_minute", _decimal(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("instance_minutes", sa.BigInteger(), nullable=False),
        sa.Column("timed_requests", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint(*GRAIN, name="usage_rollups_grain"),
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_table("usage_rollups")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("duration_ms")
