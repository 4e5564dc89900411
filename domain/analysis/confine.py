"""Confine the analysis child with Landlock: it may write no file, run no
program and open no TCP connection, whatever a hostile file makes it do.

Why Landlock rather than RLIMIT_FSIZE = 0: that limit also stops writes to
memory-backed files, and OpenCASCADE (through cascadio) hands its GLB back
through a memfd, so every STEP upload failed in the child. Landlock checks
paths: a memfd lives on the kernel's internal tmpfs, outside any path
hierarchy, and stays writable, while every file reachable by a path (disk,
/tmp, /dev/shm) refuses to be created, opened for writing, truncated,
renamed or removed. Unprivileged: it needs only `no_new_privs`.

Reading stays possible (Python imports modules lazily). The child holds no
secret: its environment is scrubbed and it is forked from a process that
never had any.
"""

from __future__ import annotations

import ctypes
import os
import platform

# Syscall numbers are shared by every architecture since Linux 5.13.
_CREATE_RULESET, _RESTRICT_SELF = 444, 446
_VERSION = 1 << 0  # landlock_create_ruleset flag: return the ABI version
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, by the ABI version that introduced them. Handled and
# granted nowhere means refused everywhere.
_FS_BY_ABI = {
    1: (
        (1 << 0)  # EXECUTE
        | (1 << 1)  # WRITE_FILE
        | (1 << 4)  # REMOVE_DIR
        | (1 << 5)  # REMOVE_FILE
        | (1 << 6)  # MAKE_CHAR
        | (1 << 7)  # MAKE_DIR
        | (1 << 8)  # MAKE_REG
        | (1 << 9)  # MAKE_SOCK
        | (1 << 10)  # MAKE_FIFO
        | (1 << 11)  # MAKE_BLOCK
        | (1 << 12)  # MAKE_SYM
    ),
    2: 1 << 13,  # REFER (link/rename across directories)
    3: 1 << 14,  # TRUNCATE
}
_NET_TCP = (1 << 0) | (1 << 1)  # BIND_TCP, CONNECT_TCP (ABI 4)
_SCOPED = (1 << 0) | (1 << 1)  # abstract UNIX sockets, signals outside (ABI 6)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when unavailable."""
    if platform.system() != "Linux":
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION))
    return max(int(version), 0)


def forbid_writes() -> int:
    """Restrict this process (and its future threads and children) for good.

    Returns the Landlock ABI used; raises OSError when it cannot be applied,
    so that the caller refuses to analyse rather than run unconfined.
    """
    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    libc = ctypes.CDLL(None, use_errno=True)
    attr = _RulesetAttr(
        handled_access_fs=sum(bits for version, bits in _FS_BY_ABI.items() if version <= abi),
        handled_access_net=_NET_TCP if abi >= 4 else 0,
        scoped=_SCOPED if abi >= 6 else 0,
    )
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise _error(libc, "landlock_create_ruleset")
    try:
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _error(libc, "prctl(NO_NEW_PRIVS)")
        if libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise _error(libc, "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _error(libc: ctypes.CDLL, call: str) -> OSError:
    number = ctypes.get_errno()
    return OSError(number, f"{call}: {os.strerror(number)}")
