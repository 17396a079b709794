"""Roles, ordered by what they may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """``dispatcher`` < ``operator`` < ``admin``: each role may do everything the roles before it may."""

    DISPATCHER = "dispatcher"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for dispatcher, 1 for operator, 2 for admin."""
        return _ORDER.index(self)

    def allows(self, minimum: Role) -> bool:
        """True when this role may use something that needs *minimum*."""
        return self.rank >= minimum.rank


_ORDER = [Role.DISPATCHER, Role.OPERATOR, Role.ADMIN]
