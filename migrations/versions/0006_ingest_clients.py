"""ingest clients: external IDs and customer user IDs belong to the account that sent them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 09:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # existing rows keep the command-line import's namespace ("")
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("client", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.drop_constraint("uq_prompts_external_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_prompts_client_external_id", ["client", "external_id"]
        )
        batch_op.drop_index("ix_prompts_user_id_status")
        batch_op.create_index(
            "ix_prompts_client_user_id_status", ["client", "user_id", "status"], unique=False
        )
    for table in ("user_quotas", "split_pins"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("client", sa.String(length=64), server_default="", nullable=False)
            )
            batch_op.drop_constraint(f"pk_{table}", type_="primary")
            batch_op.create_primary_key(f"pk_{table}", ["client", "user_id"])


def downgrade() -> None:
    for table in ("split_pins", "user_quotas"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"pk_{table}", type_="primary")
            batch_op.create_primary_key(f"pk_{table}", ["user_id"])
            batch_op.drop_column("client")
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.drop_index("ix_prompts_client_user_id_status")
        batch_op.create_index("ix_prompts_user_id_status", ["user_id", "status"], unique=False)
        batch_op.drop_constraint("uq_prompts_client_external_id", type_="unique")
        batch_op.create_unique_constraint("uq_prompts_external_id", ["external_id"])
        batch_op.drop_column("client")
