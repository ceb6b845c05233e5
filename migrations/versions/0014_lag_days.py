"""lag samples: each image's worst lag per day, for windows longer than a day

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

A month's report read every lag sample kept (14 days of hourly samples: 3.4M rows at 10,000
images) for the worst lag per image. The writer now keeps each image's worst per UTC day beside
its samples; the report reads those for the days wholly in its window. Filled here from the
samples already kept (one pass over them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lag_days",
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("image", sa.String(length=253), nullable=False),
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worst_lag_seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("cluster", "pool", "image", "day", name=op.f("pk_lag_days")),
    )
    with op.batch_alter_table("lag_days", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lag_days_day"), ["day"], unique=False)
    # The day of each sample in the form each database stores times in (naive UTC text on
    # SQLite, as UTCDateTime writes it).
    if op.get_bind().dialect.name == "sqlite":
        day = "substr(at, 1, 10) || ' 00:00:00.000000'"
    else:
        day = "date_trunc('day', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    op.execute(
        "INSERT INTO lag_days (cluster, pool, image, day, worst_lag_seconds)"
        f" SELECT cluster, pool, image, {day}, max(lag_seconds) FROM measurements"
        f" GROUP BY cluster, pool, image, {day}"
    )


def downgrade() -> None:
    with op.batch_alter_table("lag_days", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lag_days_day"))
    op.drop_table("lag_days")
