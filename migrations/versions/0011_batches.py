"""batch jobs (OpenAI's Batch API) and their answered lines; ledger entries record the job a line was part of.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MOMENTS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
           "cancelled_at")


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False, index=True),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("input_file_id", sa.String(40), nullable=False),
        sa.Column("completion_window", sa.String(8), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("output_file_id", sa.String(40), nullable=True),
        sa.Column("error_file_id", sa.String(40), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False, index=True),
        sa.Column("expires_at", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=True) for name in MOMENTS),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("worked_at", sa.Float(), nullable=True),
    )
    op.create_table(
        "batch_lines",
        sa.Column("batch_id", sa.String(40), sa.ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(40), nullable=True))
        batch.create_index("ix_ledger_entries_batch_id", ["batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_index("ix_ledger_entries_batch_id")
        batch.drop_column("batch_id")
    op.drop_table("batch_lines")
    op.drop_table("batches")
