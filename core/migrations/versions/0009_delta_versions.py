"""delta versions

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_version_number", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("base_collection", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("hidden_documents", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("hidden_chunk_count", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_column("hidden_chunk_count")
        batch_op.drop_column("hidden_documents")
        batch_op.drop_column("base_collection")
        batch_op.drop_column("base_version_number")
