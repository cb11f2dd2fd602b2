"""Errors of sign-in itself; the web layer answers each with 401 and ``WWW-Authenticate``."""

from llero.errors import LleroError, seconds_text


class AuthenticationFailed(LleroError):
    """The email and password, or the second factor, did not match.

    The message is the same for every cause (unknown email, wrong password, disabled account),
    so a caller learns nothing about which accounts exist; ``reason`` is for the log only.
    """

    code = "invalid_credentials"

    def __init__(self, reason: str, message: str = "the email or password is incorrect") -> None:
        super().__init__(message)
        self.reason = reason


class TooManyAttempts(LleroError):
    """Too many failed sign-ins for the account or the client address; the web layer answers 429.

    The message and ``retry_after`` (seconds) are the same whichever scope is throttled and
    whether or not the account exists or the credential was right.
    """

    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {seconds_text(retry_after)}")
        self.retry_after = retry_after
