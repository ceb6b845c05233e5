"""alert groups

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Incidents (alert groups) and the outbox rows that announce them: a notification is either one
violation's alert or one incident message, so violation_id becomes nullable.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_groups",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sink", sa.String(length=32), nullable=False),
        sa.Column("group_key", sa.String(length=512), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_flush_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announced", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_groups")),
    )
    with op.batch_alter_table("alert_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_groups_opened_at"), ["opened_at"], unique=False)
        batch_op.create_index(
            "uq_alert_groups_open",
            ["sink", "group_key"],
            unique=True,
            sqlite_where=sa.text("closed_at IS NULL"),
            postgresql_where=sa.text("closed_at IS NULL"),
        )

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "group_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.alter_column(
            "violation_id",
            existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        )
        batch_op.create_index(batch_op.f("ix_notifications_group_id"), ["group_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_notifications_group_id_alert_groups"),
            "alert_groups",
            ["group_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_notifications_group_id_alert_groups"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_notifications_group_id"))
        batch_op.alter_column(
            "violation_id",
            existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        )
        batch_op.drop_column("group_id")

    with op.batch_alter_table("alert_groups", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_alert_groups_open",
            sqlite_where=sa.text("closed_at IS NULL"),
            postgresql_where=sa.text("closed_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_alert_groups_opened_at"))

    op.drop_table("alert_groups")
