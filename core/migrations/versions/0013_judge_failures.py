"""judge failures: why each metric was not measured, judge calls and retries, run warnings

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 20:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_measured", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("judge_retries", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("judge_calls", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("judge_retries", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("warnings", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.drop_column("warnings")
        batch_op.drop_column("judge_retries")
        batch_op.drop_column("judge_calls")
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.drop_column("judge_retries")
        batch_op.drop_column("not_measured")
