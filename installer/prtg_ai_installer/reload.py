"""Ask the PRTG core to reload value lookups after new ``.ovl`` files were placed.

PRTG API v1: ``GET <core>/api/loadlookups.htm`` with the ``apitoken`` query
parameter (prtg-formats.md §8). TLS certificates are verified unless the caller
explicitly opts out, and the token never appears in messages: requests' own
exceptions carry the URL, token included, so they are never shown verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_S = 30.0
ENDPOINT = "/api/loadlookups.htm"


class ReloadError(Exception):
    """The reload request failed; the message is safe to print (no token)."""


@dataclass(frozen=True)
class ReloadResult:
    url: str  # without the token
    status: int


def reload_lookups(base_url: str, api_token: str, verify: bool | str = True,
                   timeout: float = DEFAULT_TIMEOUT_S, session=None) -> ReloadResult:
    """Call ``/api/loadlookups.htm`` on the PRTG core at ``base_url``.

    Args:
        base_url: e.g. ``https://prtg.example.com`` (a trailing slash or path prefix is kept).
        api_token: a PRTG API key with write access.
        verify: requests' ``verify``: True, False, or a CA bundle path.
        timeout: seconds for connect and read.
        session: a ``requests.Session`` (tests); a new one by default.

    Raises:
        ReloadError: bad URL, connection failure, or a non-2xx answer.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReloadError(f"--reload-lookups needs an http(s) URL of the PRTG core, got {_redact(base_url, api_token)!r}")
    if parts.query or parts.fragment:
        raise ReloadError("--reload-lookups takes the core's base URL without a query; the token goes in --api-token")
    if not api_token:
        raise ReloadError("--reload-lookups needs --api-token (a PRTG API key)")
    url = base_url.rstrip("/") + ENDPOINT
    import requests  # only the installer's reload needs it; keep the module light to import

    session = session or requests.Session()
    try:
        response = session.get(url, params={"apitoken": api_token}, timeout=timeout, verify=verify,
                                allow_redirects=False)
    except requests.exceptions.SSLError:
        raise ReloadError(f"TLS verification of {url} failed; pass --ca-bundle FILE for a private CA") from None
    except requests.exceptions.RequestException as exc:
        raise ReloadError(f"could not reach {url} ({type(exc).__name__})") from None
    if not 200 <= response.status_code < 300:
        hint = ""
        if response.status_code in (401, 403):
            hint = " (check the API key and its rights)"
        elif 300 <= response.status_code < 400:
            hint = " (PRTG redirects requests it does not accept to its login page: check the API key)"
        raise ReloadError(f"{url} answered HTTP {response.status_code}{hint}")
    return ReloadResult(url, response.status_code)


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
