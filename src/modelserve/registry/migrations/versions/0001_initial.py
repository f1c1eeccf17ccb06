"""The first registry schema: models, versions, aliases and the alias history.

Revision ID: 0001
Revises:
Create Date: 2024-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "modelserve_models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", name="uq_modelserve_models_name"),
    )
    op.create_table(
        "modelserve_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("modelserve_models.id", name="fk_modelserve_versions_model"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("class_path", sa.String(512), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("test_data", sa.JSON, nullable=False),
        sa.Column("golden", sa.JSON, nullable=False),
        sa.Column("tolerance", sa.JSON, nullable=False),
        sa.Column("environment", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.UniqueConstraint("model_id", "version", name="uq_modelserve_versions_model_version"),
        sa.CheckConstraint("version >= 1", name="ck_modelserve_versions_positive"),
        sa.CheckConstraint("kind IN ('file', 'dir')", name="ck_modelserve_versions_kind"),
    )
    op.create_index("ix_modelserve_versions_digest", "modelserve_versions", ["digest"])
    op.create_table(
        "modelserve_aliases",
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("modelserve_models.id", name="fk_modelserve_aliases_model"),
            primary_key=True,
        ),
        sa.Column("alias", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id", "version"],
            ["modelserve_versions.model_id", "modelserve_versions.version"],
            name="fk_modelserve_aliases_version",
        ),
    )
    op.create_table(
        "modelserve_alias_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("modelserve_models.id", name="fk_modelserve_alias_moves_model"),
            nullable=False,
        ),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_modelserve_alias_moves_model_alias",
        "modelserve_alias_moves",
        ["model_id", "alias", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_modelserve_alias_moves_model_alias", "modelserve_alias_moves")
    op.drop_table("modelserve_alias_moves")
    op.drop_table("modelserve_aliases")
    op.drop_index("ix_modelserve_versions_digest", "modelserve_versions")
    op.drop_table("modelserve_versions")
    op.drop_table("modelserve_models")
