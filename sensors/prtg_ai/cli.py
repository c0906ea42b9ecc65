"""The ``prtg-ai`` console script: the entry point of the pack.

``prtg-ai run`` takes the fast path in ``run_cli`` (no click); every other command
goes through the click group in ``commands``. Nothing imports this module back.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"] and not set(args[1:2]) & {"--help", "-h"}:
        from prtg_ai.run_cli import run_command

        return run_command(args[1:])
    from prtg_ai.commands import cli

    try:
        cli.main(args=args, prog_name="prtg-ai", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
