"""DATA_DIR holds the database, the object store and the generated keys: only
the server's own user may read it.

Every process of ours sets the umask 0o077 before it creates a file, so the
SQLite file and its -wal/-shm companions, objects, keys, backups and temporary
files are born 0600 (directories 0700), whatever the caller's umask. A data
directory made by an older version (0755 / 0644) is tightened at start-up.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def restrict_new_files() -> None:
    """Files and directories this process creates are its user's only."""
    os.umask(0o077)


def secure_data_dir(data_dir: Path) -> int:
    """Create DATA_DIR 0700 and tighten whatever is in it; returns how many modes changed."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    changed = _tighten(data_dir, DIR_MODE)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            changed += _tighten(Path(root, name), DIR_MODE)
        for name in files:
            changed += _tighten(Path(root, name), FILE_MODE)
    return changed


def _tighten(path: Path, mode: int) -> int:
    try:
        info = path.lstat()
    except FileNotFoundError:  # removed meanwhile (an object store clean-up)
        return 0
    if stat.S_ISLNK(info.st_mode) or stat.S_IMODE(info.st_mode) & ~mode == 0:
        return 0
    os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
    return 1
