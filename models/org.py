"""Who is who: companies, communities (项目), buildings, units, residents, staff and roles."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Boolean, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.db import Base


class Company(Base):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class Community(Base):
    __tablename__ = "communities"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    tz: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")


class Building(Base):
    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("community_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))


class Unit(Base):
    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("community_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"))
    code: Mapped[str] = mapped_column(String(40))  # 楼栋-单元-房号, e.g. 1-2-301
    warranty_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    community: Mapped[Community] = relationship(lazy="joined")


class Resident(Base):
    __tablename__ = "residents"
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    is_owner: Mapped[bool] = mapped_column(Boolean, default=True)


class Staff(Base):
    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    skills: Mapped[str] = mapped_column(String(200), default="")  # comma-separated
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    roles: Mapped[list[StaffRole]] = relationship(lazy="selectin", back_populates="staff")

    @property
    def skill_set(self) -> set[str]:
        return {s for s in self.skills.split(",") if s}


class StaffRole(Base):
    """A role held in one community; community_id is NULL for company-level roles."""

    __tablename__ = "staff_roles"
    __table_args__ = (UniqueConstraint("staff_id", "community_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"), nullable=True)
    role: Mapped[str] = mapped_column(String(40))
    staff: Mapped[Staff] = relationship(back_populates="roles")
