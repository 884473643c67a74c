"""The start-up check of the directories the node writes its state and spool to.

Why a real probe at start-up: a state directory the service cannot write used to surface as a
traceback and exit 1 (systemd restarts it in a loop), or worse, as a node that ran and lied: with
`mqtt-seq.json` unwritable every restart reused the same session and sequence numbers, and a spool
directory that could not be written killed the outbox at the first broker outage. Both are
configuration errors, and an easy one to make: under the unit's `ProtectSystem=strict` every path
outside `/var/lib/cuas-node` is read-only, whatever its owner and mode say. `os.access` does not
see everything (it says yes to root on any directory; a quota or an overlay can still refuse), so
this creates, writes, fsyncs and deletes a probe file, exactly what the node will do.

A full card is not refused: the node must run without a card (messages in memory, the spool
`degraded` in health, sessions still new), and refusing would silence it until someone comes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
from pathlib import Path

from cuas_node.config import ConfigError

STATE_HOME = Path("/var/lib/cuas-node")  # the unit's StateDirectory: the only place it may write
_PROBE = ".cuas-node-write-probe"
_FULL = (errno.ENOSPC, errno.EDQUOT)


def check_state_dirs(state_dir: Path, spool_dir: Path | None, create: bool = True) -> None:
    """Raise `ConfigError` (exit 78) naming every directory the node cannot write, why, and the
    fix. `create`: make missing directories first (what `run` does anyway); without it, probe the
    nearest existing parent (for `config check`, which should change nothing)."""
    problems = []
    for key, path in (("node.state_dir", state_dir), ("node.spool_dir", spool_dir)):
        if path is not None:
            problem = directory_problem(Path(path), create)
            if problem is not None:
                problems.append(f"{key}: {problem}")
    if problems:
        raise ConfigError(problems, "state directories")


def directory_problem(path: Path, create: bool = True) -> str | None:
    """Why the node cannot keep its files in `path` (with the fix), or None when it can (a full
    card included: see the module docstring)."""
    target = path
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True, mode=0o750)
        else:
            while not target.exists() and target.parent != target:
                target = target.parent
        if not target.is_dir():
            return f"{target} is not a directory" + _fix(path, errno.ENOTDIR)
    except OSError as exc:
        return f"cannot create {path} ({_reason(exc)})" + _fix(path, exc.errno)
    try:
        _probe(target)
    except OSError as exc:
        if exc.errno in _FULL:
            return None
        where = path if target == path else f"{target} (to create {path} in)"
        return f"cannot write in {where} ({_reason(exc)})" + _fix(path, exc.errno)
    return None


def _probe(directory: Path) -> None:
    """Create, write, fsync and delete a file in `directory`, like the node's own writes."""
    probe = directory / f"{_PROBE}-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"cuas-node write probe\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            probe.unlink()


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"not writable by {_user()}"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a file is in the way of a directory"
    return exc.strerror or str(exc)


def _fix(path: Path, code: int | None) -> str:
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f": remove or rename the file in the way, or choose another path under {STATE_HOME}"
    owner = f"fix its owner: sudo chown -R {_user()}: {path}"
    if path == STATE_HOME or STATE_HOME in path.parents:
        if code == errno.EROFS:
            return ": the card's file system is read-only (remounted after I/O errors?): check `dmesg`"
        if code in (errno.EACCES, errno.EPERM):
            return f": {owner}"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (
            f": use a directory under {STATE_HOME} (the unit's ProtectSystem=strict makes "
            f"everything else read-only) or {owner}"
        )
    return f": check the card and {path}"


def _user() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
