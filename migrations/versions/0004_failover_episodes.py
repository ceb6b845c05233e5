"""failover episodes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Failover and relocate episodes per volume, with their steps and RTO.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "failover_episodes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("pair", sa.String(length=63), nullable=False),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("image", sa.String(length=253), nullable=False),
        sa.Column("trigger", sa.String(length=64), nullable=False),
        sa.Column("from_cluster", sa.String(length=63), nullable=True),
        sa.Column("to_cluster", sa.String(length=63), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rto_seconds", sa.Float(), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failover_episodes")),
    )
    with op.batch_alter_table("failover_episodes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_failover_episodes_pair_pool_image_started_at"),
            ["pair", "pool", "image", "started_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_failover_episodes_started_at"), ["started_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("failover_episodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_failover_episodes_started_at"))
        batch_op.drop_index(batch_op.f("ix_failover_episodes_pair_pool_image_started_at"))

    op.drop_table("failover_episodes")
