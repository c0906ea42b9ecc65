"""The parameters ``gpu_spend`` takes for Azure and Google Cloud, and their allow-lists.

Declared here so ``gpu_spend.py`` only appends them; checked by each cloud's
``config`` with the checks below (an agent parameter is hostile: every value that
ends up in a URL path or a query is checked against a strict shape first).
"""

from __future__ import annotations

from prtg_ai.core.params import Param

CLOUDS = ("aws", "azure", "gcp")

# Every value that ends up in a URL path, a query or a cache key is checked here. By hand,
# not with regular expressions: compiling the patterns took about 1 ms of a ~65 ms scan
# answered from the cache (benchmark rows "start-up: gpu_spend --cloud azure|gcp from a
# fresh cache"), and these shapes are simple enough to say in plain code
# (tests/unit/test_cloud_param_shapes.py holds them to the expressions).
_HEX = frozenset("0123456789abcdefABCDEF")
_LOWER_DIGIT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ACCOUNT = frozenset("0123456789ABCDEF")


def is_subscription(value: str) -> bool:
    """An Azure subscription id: a GUID, 8-4-4-4-12 hex digits."""
    parts = value.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in _HEX for p in parts for c in p)


def is_group_name(value: str) -> bool:
    """An Azure resource group or management group name: 1-90 letters, digits, ``_ - . ( )``."""
    return 0 < len(value) <= 90 and all(c.isalnum() or c in "_-.()" for c in value)


def is_project(value: str) -> bool:
    """A Google Cloud project id: 6-30 of ``a-z 0-9 -``, a letter first, no hyphen last."""
    return (6 <= len(value) <= 30 and "a" <= value[0] <= "z" and value[-1] != "-"
            and all(c in _LOWER_DIGIT or c == "-" for c in value))


def _is_bigquery_name(value: str) -> bool:
    return 0 < len(value) <= 1024 and not value[0].isdigit() and all(c in _NAME for c in value)


def billing_table(value: str) -> tuple[str, str, str] | None:
    """``PROJECT.DATASET.TABLE`` split into its parts, or None when it is not a BigQuery table name."""
    parts = value.split(".")
    if len(parts) != 3 or not is_project(parts[0]) or not all(_is_bigquery_name(p) for p in parts[1:]):
        return None
    return parts[0], parts[1], parts[2]


def is_billing_account(value: str) -> bool:
    """A Cloud Billing account id: ``XXXXXX-XXXXXX-XXXXXX`` in upper-case hex."""
    parts = value.split("-")
    return [len(p) for p in parts] == [6, 6, 6] and all(c in _ACCOUNT for p in parts for c in p)


# Environment that picks each cloud's credentials and endpoints: part of the cache identity, so a
# test endpoint or another identity never reads a real scope's cache (names only; never a secret's value
# is stored, only a checksum of these).
AZURE_CREDENTIAL_ENV = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
                        "AZURE_USERNAME", "IDENTITY_ENDPOINT", "MSI_ENDPOINT", "IMDS_ENDPOINT", "AZURE_CONFIG_DIR",
                        "PRTG_AI_AZURE_ENDPOINT", "PRTG_AI_AZURE_PRICES_ENDPOINT")
GCP_CREDENTIAL_ENV = ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "GCE_METADATA_HOST", "GCE_METADATA_IP",
                      "GOOGLE_CLOUD_QUOTA_PROJECT", "PRTG_AI_GCP_BIGQUERY_ENDPOINT", "PRTG_AI_GCP_COMPUTE_ENDPOINT",
                      "PRTG_AI_GCP_TPU_ENDPOINT", "PRTG_AI_GCP_BILLING_ENDPOINT", "PRTG_AI_GCP_BUDGETS_ENDPOINT")

CLOUD_PARAMS = (
    Param("cloud", "choice", "whose GPU spend: aws (default), azure or gcp", default="aws", choices=CLOUDS,
          metavar="CLOUD"),
    Param("subscription", "str", "Azure: subscription id whose VMs are counted and whose costs are read "
          "(the cost scope unless --management-group)", metavar="GUID"),
    Param("resource_group", "str", "Azure: narrow costs and VMs to one resource group", metavar="NAME"),
    Param("management_group", "str", "Azure: read costs (and budgets) at this management group instead",
          metavar="ID"),
    Param("billing_table", "str", "Google Cloud: the Cloud Billing export table in BigQuery",
          metavar="PROJECT.DATASET.TABLE"),
    Param("project", "str", "Google Cloud: project(s) whose running GPU instances and TPU nodes are counted "
          "(repeatable or comma-separated; default: the billing table's project)", multiple=True,
          metavar="PROJECT"),
    Param("billing_account", "str", "Google Cloud: billing account whose budgets are read (Budget API)",
          metavar="XXXXXX-XXXXXX-XXXXXX"),
    Param("max_billed_gb", "float", "Google Cloud: bytes a billing query may bill at most (maximumBytesBilled)",
          default=1.0, minimum=0.01, maximum=1000.0, metavar="GB"),
)
