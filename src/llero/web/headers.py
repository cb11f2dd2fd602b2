"""Security headers added to every response, errors included."""

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders

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


def apply_security_headers(headers: MutableHeaders, *, tls: bool) -> None:
    for name, value in STATIC_HEADERS:
        headers[name] = value
    content_type = headers.get("content-type", "")
    headers["Content-Security-Policy"] = (
        PAGE_CSP if content_type.startswith("text/html") else API_CSP
    )
    # Every response may carry user data until static assets exist; those will opt in to caching.
    if "cache-control" not in headers:
        headers["Cache-Control"] = "no-store"
    if tls:
        headers["Strict-Transport-Security"] = HSTS
    for name in ("server", "x-powered-by"):
        if name in headers:
            del headers[name]


def header_names(headers: Iterable[tuple[bytes, bytes]]) -> set[str]:
    return {name.decode("latin-1").lower() for name, _ in headers}
