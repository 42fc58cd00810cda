"""deployments gain dedicated capacity (instance type, a fixed count or autoscaling bounds) and a description.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INTEGERS = ("instance_count", "min_instances", "max_instances", "target_concurrency", "cooldown_s")


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("description", sa.String(256), nullable=False, server_default=""))
        batch.add_column(sa.Column("instance_type", sa.String(32), nullable=True))
        for name in INTEGERS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        for name in (*reversed(INTEGERS), "instance_type", "description"):
            batch.drop_column(name)
