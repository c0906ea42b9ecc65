"""The parameters ``gpu_spend`` takes for Azure and Google Cloud, and their allow-lists.

Declared here so ``gpu_spend.py`` only appends them; checked by each cloud's
``config`` with the patterns below (an agent parameter is hostile: every value that
ends up in a URL path or a query is matched against a strict pattern first).
"""

from __future__ import annotations

import re

from prtg_ai.core.params import Param

CLOUDS = ("aws", "azure", "gcp")

# Patterns as strings, compiled on first use (``re`` caches them): the AWS path and every
# scan answered from the cache must not pay for compiling them at import.
# Azure: subscription GUID; resource group / management group names as Azure allows them.
SUBSCRIPTION = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
RESOURCE_GROUP = r"^[-\w.()]{1,90}$"
MANAGEMENT_GROUP = r"^[-\w.()]{1,90}$"
# Google Cloud: project ids, BigQuery dataset and table names, billing account ids.
PROJECT = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
BILLING_TABLE = (r"^(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])\.(?P<dataset>[A-Za-z_][A-Za-z0-9_]{0,1023})"
                 r"\.(?P<table>[A-Za-z_][A-Za-z0-9_]{0,1023})$")
BILLING_ACCOUNT = r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$"


def match(pattern: str, value: str):
    """``re.match`` with a ``$``-anchored pattern that also refuses a trailing newline."""
    return re.match(pattern, value) if "\n" not in value else None

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
