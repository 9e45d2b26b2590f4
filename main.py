"""Launcher: ``python main.py`` opens the GUI, ``python main.py <command>`` runs the CLI."""
import sys

from diffrecon.cli import main

if __name__ == "__main__":
    sys.exit(main())
