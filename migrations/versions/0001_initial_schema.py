"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hposvc.db.base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("system_attrs", sa.JSON(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("budget_used", sa.Integer(), nullable=False),
        sa.Column("created_at", hposvc.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", hposvc.db.base.UTCDateTime(), nullable=False),
        sa.Column("completed_at", hposvc.db.base.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("name", name=op.f("uq_studies_name")),
    )
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_studies_state"), ["state"], unique=False)

    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("devices", sa.JSON(), nullable=False),
        sa.Column("registered_at", hposvc.db.base.UTCDateTime(), nullable=False),
        sa.Column("last_heartbeat_at", hposvc.db.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("name", "host", name=op.f("uq_workers_name_host")),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("distributions", sa.JSON(), nullable=False),
        sa.Column("fixed_params", sa.JSON(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("values", sa.JSON(), nullable=True),
        sa.Column("system_attrs", sa.JSON(), nullable=False),
        sa.Column("user_attrs", sa.JSON(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_of", sa.Integer(), nullable=True),
        sa.Column("counts_budget", sa.Boolean(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("claim_request_id", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", hposvc.db.base.UTCDateTime(), nullable=True),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("pruned_step", sa.Integer(), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", hposvc.db.base.UTCDateTime(), nullable=False),
        sa.Column("started_at", hposvc.db.base.UTCDateTime(), nullable=True),
        sa.Column("finished_at", hposvc.db.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["retry_of"],
            ["trials.id"],
            name=op.f("fk_trials_retry_of_trials"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_trials_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_trials_worker_id_workers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
        sa.UniqueConstraint("study_id", "grid_id", name=op.f("uq_trials_study_id_grid_id")),
        sa.UniqueConstraint("study_id", "number", name=op.f("uq_trials_study_id_number")),
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_index("ix_trials_state_lease", ["state", "lease_expires_at"], unique=False)
        batch_op.create_index("ix_trials_study_seq", ["study_id", "seq"], unique=False)
        batch_op.create_index("ix_trials_study_state", ["study_id", "state"], unique=False)
        batch_op.create_index("ix_trials_study_value", ["study_id", "value"], unique=False)
        batch_op.create_index(
            "ix_trials_worker_request", ["worker_id", "claim_request_id"], unique=False
        )

    op.create_table(
        "intermediate_values",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("should_prune", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_intermediate_values_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", "step", name=op.f("pk_intermediate_values")),
    )


def downgrade() -> None:

    op.drop_table("intermediate_values")
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index("ix_trials_worker_request")
        batch_op.drop_index("ix_trials_study_value")
        batch_op.drop_index("ix_trials_study_state")
        batch_op.drop_index("ix_trials_study_seq")
        batch_op.drop_index("ix_trials_state_lease")

    op.drop_table("trials")
    op.drop_table("workers")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_state"))

    op.drop_table("studies")
