"""transitions: the class changes by image lead with the image (a seek on PostgreSQL too)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08

ix_transitions_image_class_by_image led with kind and field, the constants of its own
predicate. PostgreSQL drops from a scan's conditions what the index predicate already implies,
so its scan for one image's last class had no condition on the leading columns and read the
whole index backwards: 52 ms an image over report_scale's million transitions, and psycopg's
prepared (generic) plan, from the sixth image on, a bitmap scan of every class change at 150 ms.
`auditd report` asks it of every image gone in its window (38 a day there, thousands where
volumes churn). Led by cluster, pool and image it is one seek on both databases; kind and field
stay at its end, so that it still covers the query on SQLite (which reads them to match the
predicate).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NAME = "ix_transitions_image_class_by_image"
WHERE = sa.text("kind = 'RbdImage' AND field = 'class'")


def _create(columns: list[str]) -> None:
    op.create_index(
        NAME, "transitions", columns, unique=False, sqlite_where=WHERE, postgresql_where=WHERE
    )


def upgrade() -> None:
    op.drop_index(NAME, table_name="transitions")
    _create(["cluster", "namespace", "name", "observed_at", "id", "new", "kind", "field"])


def downgrade() -> None:
    op.drop_index(NAME, table_name="transitions")
    _create(["kind", "field", "cluster", "namespace", "name", "observed_at", "id", "new"])
