"""HS256 JSON Web Tokens, minted with the standard library only.

The gateway verifies them with the same secret (its `--jwt-secret`): `sub`
is the user, `device` the device, `exp` the expiry (Unix seconds) and
`rooms` the rooms the user may join and publish to (patterns; a trailing
`*` matches a prefix).
"""

import base64
import hashlib
import hmac
import json
import time


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(secret: str, user: str, rooms, ttl_secs: int, device: str = "") -> str:
    """A token for `user` (and `device`, when given), valid `ttl_secs` from now."""
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + ttl_secs, "rooms": list(rooms)}
    if device:
        claims["device"] = device
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode())
        for part in (header, claims)
    )
    sig = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(sig)}"


def verify(secret: str, token: str) -> dict:
    """The claims of a token this module minted; ValueError when it is not valid."""
    try:
        head, body, sig = token.split(".")
    except ValueError:
        raise ValueError("not a JWT") from None
    expected = hmac.new(secret.encode(), f"{head}.{body}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64url(sig)):
        raise ValueError("bad signature")
    if json.loads(_unb64url(head)).get("alg") != "HS256":
        raise ValueError("not HS256")
    claims = json.loads(_unb64url(body))
    if int(claims.get("exp", 0)) <= time.time():
        raise ValueError("expired")
    return claims
