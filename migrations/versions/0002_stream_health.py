"""stream health

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

The latest health of each watch stream, for `auditd status`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_health",
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("synced", sa.Boolean(), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_list_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disconnected_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lists", sa.Integer(), nullable=False),
        sa.Column("relists", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("bad_events", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("resource_version", sa.String(length=32), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cluster", "kind", name=op.f("pk_stream_health")),
    )


def downgrade() -> None:
    op.drop_table("stream_health")
