"""leaders

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29

Replicas sharing a PostgreSQL history elect one leader (an advisory lock); the leader records
itself here for `auditd status`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leaders",
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_leaders")),
    )


def downgrade() -> None:
    op.drop_table("leaders")
