"""Errors of sign-in itself; the web layer answers each with 401 and ``WWW-Authenticate``."""

from llero.errors import LleroError


class AuthenticationFailed(LleroError):
    """The email and password, or the second factor, did not match.

    The message is the same for every cause (unknown email, wrong password, disabled account),
    so a caller learns nothing about which accounts exist; ``reason`` is for the log only.
    """

    code = "invalid_credentials"

    def __init__(self, reason: str, message: str = "the email or password is incorrect") -> None:
        super().__init__(message)
        self.reason = reason
