"""resourceVersion and uid as text, room for every condition type

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

A resourceVersion is opaque and may be longer than 32 characters; a uid is opaque too; a fact
named after a condition type can be up to 326 characters. Too-short columns made one object
(or one bookmark) fail every batch on PostgreSQL with a DataError.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CHANGES = (
    ("objects", "uid", sa.String(length=64), sa.Text()),
    ("objects", "resource_version", sa.String(length=32), sa.Text()),
    ("transitions", "resource_version", sa.String(length=32), sa.Text()),
    ("transitions", "field", sa.String(length=128), sa.String(length=330)),
    ("stream_health", "resource_version", sa.String(length=32), sa.Text()),
)


def _alter(upgrade: bool) -> None:
    for table in dict.fromkeys(t for t, *_ in _CHANGES):
        # batch: SQLite cannot ALTER a column's type; PostgreSQL gets plain ALTERs (widening a
        # varchar to text or a longer varchar rewrites nothing).
        with op.batch_alter_table(table) as batch:
            for t, column, old, new in _CHANGES:
                if t == table:
                    batch.alter_column(
                        column,
                        type_=new if upgrade else old,
                        existing_type=old if upgrade else new,
                        existing_nullable=column != "field",
                    )


def upgrade() -> None:
    _alter(True)


def downgrade() -> None:
    _alter(False)
