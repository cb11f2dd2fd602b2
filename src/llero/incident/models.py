"""The system-wide state that incident commands change: one row, read on every request.

``tokens_not_before`` is the global counterpart of a user's not-before time: every access token
issued before it is rejected, for all users. ``lockdown`` makes Llero read-only for
everyone but admins.
"""

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped

from llero.storage.base import Base, DataClass, UTCDateTime, classified, utc_now

# The one row's id; the check constraint keeps a second row out.
STATE_ROW_ID = 1
LOCKDOWN_REASON_MAX = 200


class SystemState(Base):
    __tablename__ = "system_state"
    __table_args__ = (CheckConstraint(f"id = {STATE_ROW_ID}", name="single_row"),)

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    tokens_not_before: Mapped[datetime | None] = classified(
        DataClass.INTERNAL, UTCDateTime, nullable=True
    )
    lockdown: Mapped[bool] = classified(DataClass.INTERNAL, Boolean, default=False)
    lockdown_reason: Mapped[str] = classified(
        DataClass.INTERNAL, String(LOCKDOWN_REASON_MAX), default=""
    )
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


__all__ = ["LOCKDOWN_REASON_MAX", "STATE_ROW_ID", "SystemState"]
