"""rbd probes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

RBD probe results: sampled per-image measurements and per-pool probe health.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "measurements",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("image", sa.String(length=253), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lag_seconds", sa.Float(), nullable=True),
        sa.Column("bytes_per_second", sa.Float(), nullable=True),
        sa.Column("last_sync_seconds", sa.Float(), nullable=True),
        sa.Column("last_sync_bytes", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_measurements")),
    )
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_measurements_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_measurements_cluster_pool_image_at"),
            ["cluster", "pool", "image", "at"],
            unique=False,
        )

    op.create_table(
        "probe_health",
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("images", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("cluster", "pool", name=op.f("pk_probe_health")),
    )


def downgrade() -> None:
    op.drop_table("probe_health")
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_measurements_cluster_pool_image_at"))
        batch_op.drop_index(batch_op.f("ix_measurements_at"))

    op.drop_table("measurements")
