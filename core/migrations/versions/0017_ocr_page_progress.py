"""OCR page progress: pages of a revision read by OCR so far, and pages to read (issue 19)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 00:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("document_revisions") as batch:
        batch.add_column(sa.Column("ocr_pages_done", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("ocr_pages_total", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("document_revisions") as batch:
        batch.drop_column("ocr_pages_total")
        batch.drop_column("ocr_pages_done")
