"""Security headers added to every response, errors included."""

from collections.abc import Iterable

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
HSTS = "max-age=63072000; includeSubDomains"
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), "
    "magnetometer=(), microphone=(), payment=(), usb=(), interest-cohort=()"
)

STATIC_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", PERMISSIONS_POLICY),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("X-Permitted-Cross-Domain-Policies", "none"),
    # Browsers have removed their XSS auditors, and in the ones that kept it the auditor could be
    # abused to blank pages or leak data across origins, so current guidance (OWASP HTTP headers
    # cheat sheet, MDN) is to switch it off explicitly and rely on the CSP instead.
    ("X-XSS-Protection", "0"),
)


# Names that the security headers replace, lower-cased as ASGI sends them.
_REPLACED = frozenset(
    {name.lower().encode("latin-1") for name, _ in STATIC_HEADERS}
    | {b"content-security-policy", b"strict-transport-security", b"server", b"x-powered-by"}
)
_STATIC_RAW = [
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in STATIC_HEADERS
]


def secure_headers(headers: list[tuple[bytes, bytes]], *, tls: bool) -> list[tuple[bytes, bytes]]:
    """Return the raw ASGI ``headers`` of a response with the security headers set.

    An app's own value of a header that these set is replaced, and Server and X-Powered-By are
    removed. The list is built once, since Starlette's MutableHeaders scans every header for
    each one it sets.
    """
    secured = [(name, value) for name, value in headers if name.lower() not in _REPLACED]
    names = {name.lower() for name, _ in secured}
    content_type = next((value for name, value in secured if name.lower() == b"content-type"), b"")
    csp = PAGE_CSP if content_type.startswith(b"text/html") else API_CSP
    secured.extend(_STATIC_RAW)
    secured.append((b"content-security-policy", csp.encode("latin-1")))
    # Every response may carry user data until static assets exist; those will opt in to caching.
    if b"cache-control" not in names:
        secured.append((b"cache-control", b"no-store"))
    if tls:
        secured.append((b"strict-transport-security", HSTS.encode("latin-1")))
    return secured


def header_names(headers: Iterable[tuple[bytes, bytes]]) -> set[str]:
    return {name.decode("latin-1").lower() for name, _ in headers}
