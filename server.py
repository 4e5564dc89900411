"""Entry point: `python server.py [serve|migrate|create-staff|worker|rotate-keys|backup|restore]`.

The app is built by web/app.py, the commands live in web/cli.py.
"""

from __future__ import annotations

import sys

from web.app import create_app
from web.cli import main

__all__ = ["create_app", "main"]

if __name__ == "__main__":
    sys.exit(main())
