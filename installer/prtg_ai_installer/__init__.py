"""Installs prtg-ai's lookups, device templates and script wrappers into PRTG's folders."""
