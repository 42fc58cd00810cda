"""batch endpoints: an endpoint's default deployment (its batch jobs run there), and a job's endpoint and
deployment (fixed when it is created, so switching the default affects new jobs only).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("default_deployment", sa.String(32), nullable=True))
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("endpoint_name", sa.String(32), nullable=True))
        batch.add_column(sa.Column("deployment", sa.String(32), nullable=True))
        batch.create_index("ix_batches_endpoint_name", ["endpoint_name"])


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_index("ix_batches_endpoint_name")
        batch.drop_column("deployment")
        batch.drop_column("endpoint_name")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("default_deployment")
