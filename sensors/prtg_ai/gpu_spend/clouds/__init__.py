"""``gpu_spend --cloud azure|gcp``: the same channels as AWS from other clouds' billing and fleet APIs.

``engine`` holds what every cloud shares (caches, back-off, daily request cap,
channels); ``azure`` and ``gcp`` say what to read and how to turn it into the
shared shape (``spend_model``'s daily amounts, forecast, budgets and ``Burn``). The
backends (``prtg_ai.backends.azure`` / ``.gcp``) are imported only when a cache
must be refreshed.
"""
