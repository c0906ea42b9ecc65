"""AWS access through boto3; the only module that imports it.

Endpoints, profiles and regions follow boto3's own settings (``AWS_ENDPOINT_URL``,
``AWS_PROFILE``, ``AWS_DEFAULT_REGION``...).
"""

from __future__ import annotations


def credentials_status() -> tuple[bool, str]:
    """Say whether boto3 finds credentials, for ``prtg-ai doctor`` (never prints them)."""
    try:
        import boto3
    except ImportError:
        return False, "boto3 is not installed"
    try:
        creds = boto3.session.Session().get_credentials()
    except Exception as exc:  # a broken profile file: say what, not the contents
        return False, f"credential lookup failed ({type(exc).__name__})"
    if creds is None:
        return False, "no AWS credentials found (environment, profile, or instance role)"
    return True, f"credentials found (source: {getattr(creds, 'method', 'unknown')})"
