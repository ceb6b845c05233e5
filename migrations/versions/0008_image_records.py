"""rbd image records

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

Per site and image: when its rbd-mirror status record was last written, the role it claims and
when that role changed, when the site was demoted and what it has synced since. The verdicts
weigh these to tell a stale record from the truth during a failover.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rbd_image_records",
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("image", sa.String(length=253), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("primary", sa.Boolean(), nullable=True),
        sa.Column("role_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("demoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cluster", "pool", "image", name=op.f("pk_rbd_image_records")),
    )


def downgrade() -> None:
    op.drop_table("rbd_image_records")
