"""The gpu_spend sensor (cloud GPU spend: AWS, Azure, Google Cloud) and what only it uses."""
