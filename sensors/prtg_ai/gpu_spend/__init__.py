"""The gpu_spend sensor (cloud GPU spend: AWS, Azure, Google Cloud) and what only it uses.

``gpu_spend`` is the sensor and its AWS path (``ce_cache``: the Cost Explorer cache;
``spend_model``: daily amounts, forecast, budgets, burn). ``--cloud azure|gcp`` give the
same channels from other clouds' billing and fleet APIs: ``cloud_engine`` holds what
every cloud shares (caches, back-off, daily request cap, channels); ``azure`` and
``gcp`` say what to read and how to turn it into the shared shape; ``cloud_params``
declares and checks their parameters. The backends (``prtg_ai.backends.azure`` /
``.gcp``) are imported only when a cache must be refreshed.
"""
