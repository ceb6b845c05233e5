"""lag samples: a covering index for the worst lag per image

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

The report's worst lag per image in a window read every sample's row through the (cluster, pool,
image, at) index: 13.6 s for a month at 10,000 images and 14 days of hourly samples. With
lag_seconds in the index it is read from the index alone (2.1 s; a day's window 0.2 s). The new
index has the old one as its prefix, so the old one goes. Building it reads every sample once
(seconds per million rows).
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_measurements_cluster_pool_image_at_lag_seconds"),
            ["cluster", "pool", "image", "at", "lag_seconds"],
            unique=False,
        )
        batch_op.drop_index(batch_op.f("ix_measurements_cluster_pool_image_at"))


def downgrade() -> None:
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_measurements_cluster_pool_image_at"),
            ["cluster", "pool", "image", "at"],
            unique=False,
        )
        batch_op.drop_index(batch_op.f("ix_measurements_cluster_pool_image_at_lag_seconds"))
