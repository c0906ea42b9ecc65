"""The Azure / Google Cloud parameter checks agree with the documented shapes, written as regular expressions.

The expressions below are the shapes from the clouds' references (GUID subscription ids;
resource and management group names of letters, digits, ``_ - . ( )`` up to 90; project
ids of 6-30 lower-case letters, digits and hyphens; BigQuery dataset and table names;
billing account ids). The pack checks them by hand for start-up's sake; here every
check must give the expression's answer on edge cases and on thousands of random strings.
"""

from __future__ import annotations

import random
import re

import pytest

from prtg_ai.gpu_spend import cloud_params as cp

SUBSCRIPTION = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
GROUP = r"[-\w.()]{1,90}"
PROJECT = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
TABLE = PROJECT + r"\.[A-Za-z_][A-Za-z0-9_]{0,1023}\.[A-Za-z_][A-Za-z0-9_]{0,1023}"
ACCOUNT = r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}"

CHECKS = [
    (cp.is_subscription, SUBSCRIPTION, ["0f3c1a2b-4d5e-6f70-8192-a3b4c5d6e7f8", "0F3C1A2B-4D5E-6F70-8192-A3B4C5D6E7F8",
                                        "0f3c1a2b-4d5e-6f70-8192-a3b4c5d6e7f8\n", "0f3c1a2b4d5e6f708192a3b4c5d6e7f8",
                                        "0f3c1a2b-4d5e-6f70-8192-a3b4c5d6e7fg", "", "--"]),
    (cp.is_group_name, GROUP, ["rg-gpu.train(1)", "x" * 90, "x" * 91, "", "rg/../x", "rg\n", "Grüße_1", "a b"]),
    (cp.is_project, PROJECT, ["my-proj-1", "abcdef", "abcde", "a" * 30, "a" * 31, "1abcdef", "abcdef-",
                              "Abcdef", "abcdef\n", "ab_def1"]),
    (lambda v: cp.billing_table(v) is not None, TABLE,
     ["my-proj-1.billing.gcp_billing_export_v1_0A1B2C", "my-proj-1.b.t", "my-proj-1.1b.t", "my-proj-1.b",
      "my-proj-1.b.t.u", "my-proj-1.b.t\n", "my-proj-1..t", "my-proj-1.b.`t`", "my-proj-1.b." + "t" * 1024,
      "my-proj-1.b." + "t" * 1025]),
    (cp.is_billing_account, ACCOUNT, ["01A2B3-C4D5E6-F7A8B9", "01a2b3-C4D5E6-F7A8B9", "01A2B3C4D5E6F7A8B9",
                                      "01A2B3-C4D5E6-F7A8B9\n", "01A2B-3C4D5E6-F7A8B9"]),
]


@pytest.mark.parametrize("check, pattern, values", CHECKS)
def test_edge_cases_agree_with_the_shape(check, pattern, values):
    for value in values:
        assert check(value) == bool(re.fullmatch(pattern, value)), value


@pytest.mark.parametrize("check, pattern, values", CHECKS)
def test_random_strings_agree_with_the_shape(check, pattern, values):
    rng = random.Random(20261201)
    alphabet = "abcfAF09-_.()/ \n\u00fc" + "xyz"
    seeds = [v for v in values if v]
    for _ in range(3000):
        if rng.random() < 0.5:  # mutate a valid-looking seed: the interesting boundary
            chars = list(rng.choice(seeds))
            for _ in range(rng.randint(1, 3)):
                chars.insert(rng.randrange(len(chars) + 1), rng.choice(alphabet))
                if len(chars) > 1 and rng.random() < 0.5:
                    del chars[rng.randrange(len(chars))]
            value = "".join(chars)
        else:
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert check(value) == bool(re.fullmatch(pattern, value)), repr(value)
