"""``python -m prtg_ai_installer install|uninstall ...``."""

from prtg_ai_installer.cli import main

main()
