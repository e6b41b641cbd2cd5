"""injection counts

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 17:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("document_revisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("injection_counts", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("document_revisions", schema=None) as batch_op:
        batch_op.drop_column("injection_counts")
