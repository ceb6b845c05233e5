"""report indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

What the report filters and aggregates on: a violation's namespace (backfilled from its
evidence), and indexes for incidents fired, notifications created or of one violation, and
transitions of one kind and field in a window.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_transitions_kind_field_observed_at"),
            ["kind", "field", "observed_at"],
            unique=False,
        )

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notifications_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notifications_violation_id"), ["violation_id"], unique=False
        )

    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("namespace", sa.String(length=253), nullable=True))
        batch_op.create_index(batch_op.f("ix_violations_fired_at"), ["fired_at"], unique=False)

    # Backfill from the evidence, portably (JSON operators differ between the backends).
    violations = sa.table(
        "violations",
        sa.column("id", sa.BigInteger()),
        sa.column("evidence", sa.JSON()),
        sa.column("namespace", sa.String()),
    )
    bind = op.get_bind()
    for vid, evidence in bind.execute(sa.select(violations.c.id, violations.c.evidence)).all():
        ns = (evidence or {}).get("namespace")
        if ns:
            bind.execute(
                violations.update().where(violations.c.id == vid).values(namespace=str(ns))
            )


def downgrade() -> None:
    with op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transitions_kind_field_observed_at"))

    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_violations_fired_at"))
        batch_op.drop_column("namespace")

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_violation_id"))
        batch_op.drop_index(batch_op.f("ix_notifications_created_at"))
