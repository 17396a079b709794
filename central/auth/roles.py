"""Roles, ordered by what they may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """``observer`` < ``dispatcher`` < ``operator`` < ``admin``: each may do everything the roles before it may.

    An observer reads the fleet's status, events and availability but sees no camera picture and no live video
    (view rights start at ``dispatcher``): the account for annual reports and for staff who must not watch people.
    """

    OBSERVER = "observer"
    DISPATCHER = "dispatcher"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for observer, 1 for dispatcher, 2 for operator, 3 for admin."""
        return _ORDER.index(self)

    def allows(self, minimum: Role) -> bool:
        """True when this role may use something that needs *minimum*."""
        return self.rank >= minimum.rank


_ORDER = [Role.OBSERVER, Role.DISPATCHER, Role.OPERATOR, Role.ADMIN]
