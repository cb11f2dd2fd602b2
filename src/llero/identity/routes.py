"""HTTP routes of sign-in, sessions, second factors, users and API tokens.

Each route names its permission and calls the services. ``mount`` adds them to the app together
with what ``requires`` needs to authenticate every other route.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response

from llero.access.permissions import NotAuthenticated, Permission, principal_of, requires
from llero.config.settings import Settings
from llero.crypto import random_token
from llero.identity import api_tokens, service, sessions
from llero.identity.authentication import CSRF_COOKIE, SESSION_COOKIE, RequestAuthenticator
from llero.identity.context import IdentityContext
from llero.identity.errors import AuthenticationFailed
from llero.identity.models import RevocationReason, UserStatus
from llero.identity.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenList,
    ApiTokenOut,
    Enrolled,
    EnrollRequest,
    MfaRequired,
    ProfileUpdate,
    RecoveryCodes,
    RefreshRequest,
    SessionList,
    SessionOut,
    SessionsRevoked,
    SignedIn,
    SignInMfaRequest,
    SignInRequest,
    SignOutRequest,
    TotpConfirmRequest,
    TotpEnrollmentOut,
    UserCreate,
    UserCreated,
    UserOut,
    UserPage,
    UserUpdate,
)
from llero.identity.sessions import ClientInfo, IssuedTokens
from llero.web.clients import audit_context, client_address, origin_of
from llero.web.deps import SessionDep, get_database

# Ids are 32-bit integers in every supported database.
ID_MAX = 2**31 - 1
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
# Public keys change only when the ring is rotated and the server restarted, so a verifier that
# caches them for five minutes picks up a new key soon after.
JWKS_CACHE_CONTROL = "public, max-age=300"

router = APIRouter()

IdPath = Annotated[int, Path(ge=1, le=ID_MAX)]


def get_identity(request: Request) -> IdentityContext:
    context: IdentityContext = request.app.state.identity
    return context


IdentityDep = Annotated[IdentityContext, Depends(get_identity)]


def mount(app: FastAPI, settings: Settings) -> None:
    """Load the signing keys, install the authenticator that ``requires`` uses, add the routes."""
    context = IdentityContext.from_settings(settings)
    app.state.identity = context
    app.state.authenticator = RequestAuthenticator(app.state.database, context)
    app.include_router(router)


# --- Sign-in -----------------------------------------------------------------------------------


@router.post(
    "/api/auth/signin",
    dependencies=[requires(Permission.AUTH_SIGNIN)],
    response_model=SignedIn | MfaRequired,
    tags=["auth"],
)
async def sign_in(
    request: Request, response: Response, context: IdentityDep, body: SignInRequest
) -> SignedIn | MfaRequired:
    """Sign in with email and password; return tokens or a second-factor challenge."""
    try:
        outcome = await service.sign_in(
            get_database(request),
            context,
            email=body.email,
            password=body.password,
            client=_client_of(request),
            request=audit_context(request),
        )
    except AuthenticationFailed:
        request.app.state.alerts.sign_in_failed(context.now())
        raise
    if isinstance(outcome, service.MfaChallenge):
        return MfaRequired(
            challenge=outcome.challenge.reveal(), challenge_expires_at=outcome.expires_at
        )
    return _signed_in(response, context, outcome, body.session_cookie)


@router.post(
    "/api/auth/signin/mfa",
    dependencies=[requires(Permission.AUTH_SIGNIN)],
    response_model=SignedIn,
    tags=["auth"],
)
def sign_in_second_factor(
    request: Request, response: Response, context: IdentityDep, body: SignInMfaRequest
) -> SignedIn:
    """Finish a sign-in with a TOTP code or a recovery code."""
    try:
        issued = service.complete_mfa_sign_in(
            get_database(request),
            context,
            challenge=body.challenge,
            code=body.code,
            recovery_code=body.recovery_code,
            client=_client_of(request),
            request=audit_context(request),
        )
    except AuthenticationFailed:
        request.app.state.alerts.sign_in_failed(context.now())
        raise
    return _signed_in(response, context, issued, body.session_cookie)


@router.post(
    "/api/auth/refresh",
    dependencies=[requires(Permission.AUTH_REFRESH)],
    response_model=SignedIn,
    tags=["auth"],
)
def refresh(
    request: Request, response: Response, context: IdentityDep, body: RefreshRequest
) -> SignedIn:
    """Exchange a refresh token for new tokens; the presented one can never be used again."""
    try:
        issued = sessions.refresh_session(
            get_database(request), context, body.refresh_token, audit_context(request)
        )
    except NotAuthenticated as error:
        if error.reason == RevocationReason.REFRESH_TOKEN_REUSED:
            request.app.state.alerts.refresh_token_reused()
        raise
    return _signed_in(response, context, issued, body.session_cookie)


@router.post(
    "/api/auth/signout",
    dependencies=[requires(Permission.AUTH_SIGNOUT)],
    status_code=204,
    tags=["auth"],
)
def sign_out(
    request: Request, session: SessionDep, context: IdentityDep, body: SignOutRequest
) -> Response:
    """End the session of the refresh token and clear the browser's session cookies."""
    sessions.sign_out(session, context, body.refresh_token, audit_context(request))
    response = Response(status_code=204)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")
    response.headers["Clear-Site-Data"] = '"cookies"'
    return response


@router.post(
    "/api/auth/enroll",
    dependencies=[requires(Permission.AUTH_ENROLL)],
    response_model=Enrolled,
    tags=["auth"],
)
async def enroll(request: Request, context: IdentityDep, body: EnrollRequest) -> Enrolled:
    """Set the first password with a one-time enrollment code; then sign in."""
    user_id = await service.enroll(
        get_database(request),
        context,
        code=body.code,
        password=body.password,
        request=audit_context(request),
    )
    return Enrolled(user_id=user_id)


@router.get("/.well-known/jwks.json", dependencies=[requires(Permission.JWKS_READ)], tags=["auth"])
def jwks(response: Response, context: IdentityDep) -> dict[str, list[dict[str, str]]]:
    """Return the public keys that verify access tokens, as a JSON Web Key Set."""
    response.headers["Cache-Control"] = JWKS_CACHE_CONTROL
    return context.tokens.jwks()


# --- Own sessions and second factor -----------------------------------------------------------


@router.get(
    "/api/auth/sessions",
    dependencies=[requires(Permission.AUTH_SESSION_READ)],
    response_model=SessionList,
    tags=["auth"],
)
def list_own_sessions(request: Request, session: SessionDep, context: IdentityDep) -> SessionList:
    """List the caller's sessions that can still be refreshed."""
    found = sessions.list_sessions(session, context, principal_of(request).user_id)
    return SessionList(items=[SessionOut.model_validate(item) for item in found])


@router.delete(
    "/api/auth/sessions/{session_id}",
    dependencies=[requires(Permission.AUTH_SESSION_REVOKE)],
    status_code=204,
    tags=["auth"],
)
def revoke_own_session(
    request: Request, session: SessionDep, context: IdentityDep, session_id: IdPath
) -> Response:
    """End one of the caller's sessions, for example on a lost device."""
    sessions.revoke_own_session(
        session, context, origin_of(request), principal_of(request).user_id, session_id
    )
    return Response(status_code=204)


@router.post(
    "/api/auth/mfa/totp",
    dependencies=[requires(Permission.AUTH_MFA_ENROLL)],
    response_model=TotpEnrollmentOut,
    tags=["auth"],
)
def start_totp(request: Request, session: SessionDep) -> TotpEnrollmentOut:
    """Start TOTP enrollment: the otpauth URI, the key to type, and a QR code as SVG."""
    enrollment = service.start_totp_enrollment(session, principal_of(request).user_id)
    return TotpEnrollmentOut(
        provisioning_uri=enrollment.provisioning_uri.reveal(),
        manual_key=enrollment.manual_key.reveal(),
        qr_svg=enrollment.qr_svg.reveal(),
    )


@router.post(
    "/api/auth/mfa/totp/confirm",
    dependencies=[requires(Permission.AUTH_MFA_ENROLL)],
    response_model=RecoveryCodes,
    tags=["auth"],
)
def confirm_totp(
    request: Request, session: SessionDep, context: IdentityDep, body: TotpConfirmRequest
) -> RecoveryCodes:
    """Confirm TOTP with the app's first code; returns ten recovery codes, shown only now."""
    codes = service.confirm_totp_enrollment(
        session, context, origin_of(request), principal_of(request).user_id, body.code
    )
    return RecoveryCodes(recovery_codes=[code.reveal() for code in codes])


# --- Own profile -------------------------------------------------------------------------------


@router.get(
    "/api/users/me",
    dependencies=[requires(Permission.PROFILE_READ)],
    response_model=UserOut,
    tags=["users"],
)
def read_profile(request: Request, session: SessionDep) -> Any:
    """Return the caller's own account."""
    return service.get_user(session, principal_of(request).user_id)


@router.patch(
    "/api/users/me",
    dependencies=[requires(Permission.PROFILE_UPDATE)],
    response_model=UserOut,
    tags=["users"],
)
def update_profile(
    request: Request, session: SessionDep, context: IdentityDep, body: ProfileUpdate
) -> Any:
    """Change the caller's display name; role, status and email are not fields of this body."""
    return service.update_profile(
        session,
        origin_of(request),
        principal_of(request).user_id,
        display_name=body.display_name,
        now=context.now(),
    )


# --- Users (admin) -----------------------------------------------------------------------------


@router.get(
    "/api/users",
    dependencies=[requires(Permission.USER_READ)],
    response_model=UserPage,
    tags=["users"],
)
def list_users(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> UserPage:
    """List users ordered by id."""
    users, total = service.list_users(session, limit=limit, offset=offset)
    items = [UserOut.model_validate(user) for user in users]
    return UserPage(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "/api/users",
    dependencies=[requires(Permission.USER_CREATE)],
    status_code=201,
    response_model=UserCreated,
    tags=["users"],
)
def create_user(
    request: Request, session: SessionDep, context: IdentityDep, body: UserCreate
) -> UserCreated:
    """Create a pending user and return their one-time enrollment code, shown only now."""
    now = context.now()
    origin = origin_of(request)
    user = service.create_user(
        session, origin, email=body.email, display_name=body.display_name, role=body.role, now=now
    )
    issued = service.issue_enrollment_code(session, origin, user, now)
    return UserCreated(
        user=UserOut.model_validate(user),
        enrollment_code=issued.code.reveal(),
        enrollment_code_expires_at=issued.expires_at,
    )


@router.get(
    "/api/users/{user_id}",
    dependencies=[requires(Permission.USER_READ)],
    response_model=UserOut,
    tags=["users"],
)
def read_user(session: SessionDep, user_id: IdPath) -> Any:
    return service.get_user(session, user_id)


@router.patch(
    "/api/users/{user_id}",
    dependencies=[requires(Permission.USER_UPDATE)],
    response_model=UserOut,
    tags=["users"],
)
def update_user(
    request: Request, session: SessionDep, context: IdentityDep, user_id: IdPath, body: UserUpdate
) -> Any:
    """Change a user's role or status. Disabling ends their sessions and tokens at once."""
    return service.update_user(
        session,
        context,
        origin_of(request),
        user_id=user_id,
        role=body.role,
        status=None if body.status is None else UserStatus(body.status),
    )


@router.post(
    "/api/users/{user_id}/sessions/revoke",
    dependencies=[requires(Permission.USER_REVOKE_SESSIONS)],
    response_model=SessionsRevoked,
    tags=["users"],
)
def revoke_user_sessions(
    request: Request, session: SessionDep, context: IdentityDep, user_id: IdPath
) -> SessionsRevoked:
    """End every session of a user and every access token issued to them so far."""
    user = service.get_user(session, user_id)
    revoked = sessions.revoke_all_sessions(
        session, context, origin_of(request), user, RevocationReason.REVOKED_BY_ADMIN
    )
    return SessionsRevoked(revoked=revoked)


# --- Personal API tokens -----------------------------------------------------------------------


@router.post(
    "/api/tokens",
    dependencies=[requires(Permission.API_TOKEN_CREATE)],
    status_code=201,
    response_model=ApiTokenCreated,
    tags=["tokens"],
)
def create_api_token(
    request: Request, session: SessionDep, context: IdentityDep, body: ApiTokenCreate
) -> ApiTokenCreated:
    """Create a personal API token limited to ``scopes``; the token is shown only now."""
    owner = service.get_user(session, principal_of(request).user_id)
    created = api_tokens.create_api_token(
        session,
        origin_of(request),
        owner,
        name=body.name,
        scopes=body.scopes,
        lifetime_days=body.expires_in_days,
        now=context.now(),
    )
    summary = ApiTokenOut.model_validate(created.record)
    return ApiTokenCreated(**summary.model_dump(), token=created.token.reveal())


@router.get(
    "/api/tokens",
    dependencies=[requires(Permission.API_TOKEN_READ)],
    response_model=ApiTokenList,
    tags=["tokens"],
)
def list_api_tokens(request: Request, session: SessionDep) -> ApiTokenList:
    """List the caller's API tokens without their values."""
    found = api_tokens.list_api_tokens(session, principal_of(request).user_id)
    return ApiTokenList(items=[ApiTokenOut.model_validate(item) for item in found])


@router.delete(
    "/api/tokens/{token_id}",
    dependencies=[requires(Permission.API_TOKEN_REVOKE)],
    status_code=204,
    tags=["tokens"],
)
def revoke_api_token(
    request: Request, session: SessionDep, context: IdentityDep, token_id: IdPath
) -> Response:
    api_tokens.revoke_api_token(
        session, origin_of(request), principal_of(request).user_id, token_id, context.now()
    )
    return Response(status_code=204)


# --- Helpers -----------------------------------------------------------------------------------


def _client_of(request: Request) -> ClientInfo:
    return ClientInfo.of(request.headers.get("user-agent"), client_address(request))


def _signed_in(
    response: Response, context: IdentityContext, issued: IssuedTokens, session_cookie: bool
) -> SignedIn:
    now = context.now()
    expires_in = max(int((issued.access_expires_at - now).total_seconds()), 0)
    csrf_token = _set_session_cookies(response, issued, expires_in) if session_cookie else None
    return SignedIn(
        access_token=issued.access_token.reveal(),
        expires_at=issued.access_expires_at,
        expires_in=expires_in,
        refresh_token=issued.refresh_token.reveal(),
        session_id=issued.session_id,
        refresh_expires_at=issued.idle_expires_at,
        session_expires_at=issued.absolute_expires_at,
        mfa_enrollment_required=issued.mfa_enrollment_required,
        csrf_token=csrf_token,
    )


def _set_session_cookies(response: Response, issued: IssuedTokens, max_age: int) -> str:
    """Set the session cookie and its CSRF cookie; return the CSRF token for the body."""
    # TODO: the refresh token is in the body only. The web UI will want it in an HttpOnly cookie
    # scoped to /api/auth/refresh, so that page scripts never hold it.
    csrf_token = random_token()
    response.set_cookie(
        SESSION_COOKIE,
        issued.access_token.reveal(),
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    # Readable by the page's own scripts, which must copy it into the X-CSRF-Token header.
    response.set_cookie(
        CSRF_COOKIE, csrf_token, max_age=max_age, path="/", secure=True, samesite="strict"
    )
    return csrf_token
