"""identity: each tenant's OpenID Connect issuer (a token maps to exactly one tenant by its issuer), the
token's subject on ledger entries (reports group by it), endpoints' auth mode wide enough for
``key_or_token``, and batch jobs' key id wide enough for a token caller's (``token:<tenant>``).

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
    with op.batch_alter_table("endpoints") as batch:
        batch.alter_column("auth_mode", type_=sa.String(16), existing_type=sa.String(8), existing_nullable=False)
    with op.batch_alter_table("batches") as batch:
        batch.alter_column("key_id", type_=sa.String(80), existing_type=sa.String(40), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.alter_column("key_id", type_=sa.String(40), existing_type=sa.String(80), existing_nullable=False)
    # The old code knows keys only: a token endpoint goes back to taking keys (what it could then do).
    op.execute("UPDATE endpoints SET auth_mode = 'key' WHERE auth_mode <> 'key'")
    with op.batch_alter_table("endpoints") as batch:
        batch.alter_column("auth_mode", type_=sa.String(8), existing_type=sa.String(16), existing_nullable=False)
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("subject")
    op.drop_table("tenant_identities")
