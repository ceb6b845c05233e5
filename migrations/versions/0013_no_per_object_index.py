"""transitions: no per-object index; class changes findable per image

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

ix_transitions_cluster_kind_namespace_name_observed_at took every transition at a random place
(its key starts with the object), so each commit dirtied about one page of it per row, and the
cost of a row grew with the history (bench/watch_scale.py --history). Nothing read it but
retention's "is this row superseded" question, which now asks a table of each field's newest
row made once per prune (store/retention.py), and the report's "an image's class before the
window", which gets a partial index of its own: class changes are a few a day per image.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

WHERE = sa.text("kind = 'RbdImage' AND field = 'class'")


def upgrade() -> None:
    op.create_index(
        "ix_transitions_image_class_by_image",
        "transitions",
        ["kind", "field", "cluster", "namespace", "name", "observed_at", "id", "new"],
        unique=False,
        sqlite_where=WHERE,
        postgresql_where=WHERE,
    )
    op.drop_index(
        "ix_transitions_cluster_kind_namespace_name_observed_at", table_name="transitions"
    )


def downgrade() -> None:
    op.create_index(
        "ix_transitions_cluster_kind_namespace_name_observed_at",
        "transitions",
        ["cluster", "kind", "namespace", "name", "observed_at"],
        unique=False,
    )
    op.drop_index("ix_transitions_image_class_by_image", table_name="transitions")
