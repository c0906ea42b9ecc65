"""prtg-ai: a PRTG custom sensor pack for AI infrastructure."""

__version__ = "0.1.0"
