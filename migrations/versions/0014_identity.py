"""identity: each tenant's OpenID Connect issuer (a token maps to exactly one tenant by its issuer), and the
token's subject on ledger entries, so reports can group by it.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_identities",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("issuer", sa.String(512), nullable=False),
        sa.Column("audience", sa.String(256), nullable=False),
        sa.Column("subject_claim", sa.String(64), nullable=False),
        sa.Column("roles_claim", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("issuer", name="uq_tenant_identities_issuer"),
    )
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("subject", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("subject")
    op.drop_table("tenant_identities")
