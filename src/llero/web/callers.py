"""The ``Caller`` of a request, for routes that read or change owned objects."""

from typing import Annotated

from fastapi import Depends, Request

from llero.access.ownership import Caller
from llero.access.permissions import principal_of
from llero.web.clients import origin_of


def caller_of(request: Request) -> Caller:
    """Return the signed-in user of ``request`` as a caller; only for authenticated routes."""
    return Caller.of(principal_of(request), origin_of(request))


CallerDep = Annotated[Caller, Depends(caller_of)]
