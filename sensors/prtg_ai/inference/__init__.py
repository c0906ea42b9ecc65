"""The inference sensor (vLLM, TGI, Triton and friends over /metrics) and its metric maths."""
