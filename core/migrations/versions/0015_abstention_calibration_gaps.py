"""abstention calibration and knowledge gaps: answerable golden items, per-question evidence in
evaluation results, the judge's host, the calibrated threshold per version, answerable feedback

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("golden_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answerable", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answerable", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("answer_mode", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("grounding_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("unsupported_sentences", sa.Integer(), nullable=True))
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("judge_host", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("calibration", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("calibrated_threshold", sa.Float(), nullable=True))
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answerable", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_column("answerable")
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_column("calibrated_threshold")
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.drop_column("calibration")
        batch_op.drop_column("judge_host")
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.drop_column("unsupported_sentences")
        batch_op.drop_column("grounding_score")
        batch_op.drop_column("confidence")
        batch_op.drop_column("answer_mode")
        batch_op.drop_column("answerable")
    with op.batch_alter_table("golden_items", schema=None) as batch_op:
        batch_op.drop_column("answerable")
