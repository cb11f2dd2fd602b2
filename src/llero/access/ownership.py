"""Who is acting on tools and agents, and what they may see and change.

A tool or an agent belongs to the user who created it. Admins see and change every object. Any
other user sees the objects they own and those shared with them or with everyone, and changes
only their own. A share grants reading (and using, for an agent), never changing. Objects
without an owner (created by the CLI or before ownership existed) belong to the system, so only
admins see them until an admin shares them.

A user who may not see an object gets the same NotFound as for an id that does not exist, so
guessing ids confirms nothing. A user who sees an object but may not change it gets Forbidden,
because its existence is no secret to them.
"""

from dataclasses import dataclass

from llero.access.permissions import PermissionDenied, Principal
from llero.access.roles import Role
from llero.audit.context import Origin


@dataclass(frozen=True)
class Caller:
    """The user (or system process) on whose behalf a service reads or changes objects.

    ``user_id`` is None for the system, which acts as an admin. ``origin`` is what the audit
    records of the call name as actor and request.
    """

    user_id: int | None
    sees_all: bool
    origin: Origin

    @classmethod
    def of(cls, principal: Principal, origin: Origin) -> "Caller":
        return cls(principal.user_id, principal.role == Role.ADMIN, origin)

    @classmethod
    def system(cls, name: str) -> "Caller":
        """Return the caller of a command run by the operator, such as ``Caller.system("cli")``."""
        return cls(None, True, Origin.system(name))

    def owns(self, owner_user_id: int | None) -> bool:
        """Return whether this caller may change an object owned by ``owner_user_id``."""
        return self.sees_all or (self.user_id is not None and owner_user_id == self.user_id)


class NotOwner(PermissionDenied):
    """The caller sees the object through a share, but only its owner or an admin may change it."""

    code = "forbidden"

    def __init__(self, kind: str, object_id: int) -> None:
        super().__init__(
            f"{kind} {object_id} is shared with you for reading; only its owner or an admin "
            "can change it"
        )
