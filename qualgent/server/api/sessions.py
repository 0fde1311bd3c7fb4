"""The dashboard's login sessions: a signed cookie that names a token without carrying it.

Logging in with a token sets `qualgent_session` to `<payload>.<signature>`: the payload says who (`admin`, or
the SHA-256 of a submitter's token, the same digest api_tokens stores) and until when; the signature is an
HMAC keyed from QUALGENT_ADMIN_TOKEN, so every server of a deployment accepts the cookies of the others,
and changing the admin token logs everyone out. The token itself never goes into the cookie, so a leaked
cookie is no API token, and it lasts `SESSION_SECONDS` at most. Each request looks the digest up as a
bearer token would be (the token cache): a revoked token ends its sessions at once.

The cookie is httpOnly (no script reads it), SameSite=Strict (no other site's page sends it) and Secure
over HTTPS. Forms are also protected by a CSRF token (qualgent.server.web.csrf).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

COOKIE = "qualgent_session"
SESSION_SECONDS = 12 * 3600
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Session:
    subject: str  # ADMIN, or the SHA-256 hex digest of a token
    expires_at: int


def _key(admin_token: str) -> bytes:
    return hashlib.sha256(b"qualgent dashboard session\x00" + admin_token.encode("utf-8", "surrogatepass")).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(admin_token: str, subject: str, now: float | None = None, lifetime: int = SESSION_SECONDS) -> str:
    """The cookie value for a session of `subject`."""
    expires = int((time.time() if now is None else now) + lifetime)
    payload = _b64(json.dumps({"s": subject, "e": expires}, separators=(",", ":")).encode())
    signature = _b64(hmac.new(_key(admin_token), payload.encode("ascii"), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def open_cookie(admin_token: str, value: str, now: float | None = None) -> Session | None:
    """The session a cookie value carries, or None when it is malformed, forged or expired."""
    if len(value) > 512 or value.count(".") != 1:
        return None
    payload, signature = value.split(".")
    expected = _b64(hmac.new(_key(admin_token), payload.encode("ascii", "replace"), hashlib.sha256).digest())
    if not hmac.compare_digest(signature.encode("ascii", "replace"), expected.encode("ascii")):
        return None
    try:
        data = json.loads(_unb64(payload))
        session = Session(str(data["s"]), int(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    if session.expires_at <= (time.time() if now is None else now):
        return None
    return session


def cookie_of(headers: Iterable[tuple[bytes, bytes]], name: str = COOKIE) -> str | None:
    """A cookie's value from raw ASGI headers (the middleware runs before Litestar parses them)."""
    for header, value in headers:
        if header != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, found = part.strip().partition("=")
            if key == name and found:
                return found
    return None
