"""ledger entries record the endpoint and deployment that served them, so reports can group by both.

Entries made before endpoints existed were served by the built-in serverless endpoint's one deployment.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("endpoint_name", sa.String(32), nullable=False, server_default="serverless"))
        batch.add_column(sa.Column("deployment", sa.String(32), nullable=False, server_default="default"))


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("deployment")
        batch.drop_column("endpoint_name")
