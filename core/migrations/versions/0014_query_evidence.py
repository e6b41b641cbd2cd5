"""query evidence: confidence, grounding score and unsupported sentences per logged query (issue 18)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("query_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("grounding_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("unsupported_sentences", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("query_log", schema=None) as batch_op:
        batch_op.drop_column("unsupported_sentences")
        batch_op.drop_column("grounding_score")
        batch_op.drop_column("confidence")
