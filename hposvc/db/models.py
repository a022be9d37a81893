"""ORM tables. Lookups that every service needs live here too."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from hposvc.db.base import Base, UTCDateTime, utcnow
from hposvc.errors import NotFoundError
from hposvc.schemas.studies import STUDY_NAME

_STUDY_NAME = re.compile(STUDY_NAME.removeprefix("^").removesuffix("$"))


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Attributes Optuna's samplers keep per study (QMC sample id, NSGA-II parents...).
    system_attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Bumped by every write to the study's trials; trials carry the value of their last write,
    # so a cache can read only what changed since it last looked.
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    n_trials: Mapped[int] = mapped_column(Integer, default=0)
    budget_used: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    trials: Mapped[list[Trial]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number"),
        UniqueConstraint("study_id", "grid_id"),
        Index("ix_trials_study_seq", "study_id", "seq"),
        Index("ix_trials_study_state", "study_id", "state"),
        Index("ix_trials_study_value", "study_id", "value"),
        Index("ix_trials_state_lease", "state", "lease_expires_at"),
        Index("ix_trials_worker_request", "worker_id", "claim_request_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Optuna distribution JSON per parameter, so a rebuilt cache gets each trial's own space.
    distributions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    fixed_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    values: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    system_attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    user_attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retry_of: Mapped[int | None] = mapped_column(
        ForeignKey("trials.id", ondelete="SET NULL"), nullable=True
    )
    counts_budget: Mapped[bool] = mapped_column(Boolean, default=True)
    worker_id: Mapped[int | None] = mapped_column(
        ForeignKey("workers.id", ondelete="SET NULL"), nullable=True
    )
    claim_request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    fail_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    pruned_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    grid_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    study: Mapped[Study] = relationship(back_populates="trials")
    intermediate_values: Mapped[list[IntermediateValue]] = relationship(
        order_by="IntermediateValue.step", cascade="all, delete-orphan", passive_deletes=True
    )


class IntermediateValue(Base):
    __tablename__ = "intermediate_values"

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    # The pruner's answer to this report, returned again when the report is retried.
    should_prune: Mapped[bool] = mapped_column(Boolean, default=False)


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (UniqueConstraint("name", "host"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    host: Mapped[str] = mapped_column(String(255))
    slots: Mapped[int] = mapped_column(Integer, default=1)
    devices: Mapped[list[str]] = mapped_column(JSON, default=list)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def _find_one(session: Session, query: Any, for_update: bool, missing: str, code: str) -> Any:
    if for_update:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFoundError(missing, code=code)
    return row


def find_study_by_name(session: Session, name: str, *, for_update: bool = False) -> Study:
    """The study called ``name``; with ``for_update`` its row is locked (PostgreSQL).

    Raises:
        NotFoundError: no such study.
    """
    missing = f"study {name!r} not found"
    if not _STUDY_NAME.fullmatch(name):  # cannot exist; never send such text to the database
        raise NotFoundError(missing, code="study_not_found")
    query = select(Study).where(Study.name == name)
    return _find_one(session, query, for_update, missing, "study_not_found")


def find_study_by_id(session: Session, study_id: int, *, for_update: bool = False) -> Study:
    """Raises: NotFoundError."""
    query = select(Study).where(Study.id == study_id)
    return _find_one(session, query, for_update, f"study {study_id} not found", "study_not_found")


def find_trial_by_id(session: Session, trial_id: int, *, for_update: bool = False) -> Trial:
    """Raises: NotFoundError."""
    query = select(Trial).where(Trial.id == trial_id)
    return _find_one(session, query, for_update, f"trial {trial_id} not found", "trial_not_found")


def find_worker_by_id(session: Session, worker_id: int) -> Worker:
    """Raises: NotFoundError."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFoundError(f"worker {worker_id} is not registered", code="worker_not_found")
    return worker
