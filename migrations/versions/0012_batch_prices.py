"""batch prices: token prices get a tier, 'online' (every entry made before it) or 'batch' (batch job lines).

An entry is unique per (model, tier, effective_from) instead of (model, effective_from). Nothing is seeded here:
``PriceBook.seed`` gives catalog models their batch defaults. A downgrade drops the batch entries.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD, NEW = ["model", "effective_from"], ["model", "tier", "effective_from"]
NEW_NAME = "uq_prices_model_tier_effective_from"
# SQLite keeps 0002's unique constraint without a name; batch mode names the reflected one by this convention.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _unique_name(columns: list[str]) -> str:
    """The name of the unique constraint of ``prices`` on ``columns`` (PostgreSQL named it at creation)."""
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints("prices"):
        if constraint["column_names"] == columns and constraint["name"]:
            return str(constraint["name"])
    return f"uq_prices_{'_'.join(columns)}"


def upgrade() -> None:
    old = _unique_name(OLD)
    with op.batch_alter_table("prices", naming_convention=NAMING) as batch:
        batch.add_column(sa.Column("tier", sa.String(8), nullable=False, server_default="online"))
        batch.drop_constraint(old, type_="unique")
        batch.create_unique_constraint(NEW_NAME, NEW)


def downgrade() -> None:
    op.execute("DELETE FROM prices WHERE tier <> 'online'")
    with op.batch_alter_table("prices", naming_convention=NAMING) as batch:
        batch.drop_constraint(NEW_NAME, type_="unique")
        batch.create_unique_constraint("prices_model_effective_from_key", OLD)
        batch.drop_column("tier")
