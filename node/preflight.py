"""Pre-flight: every check `cuas-node run` makes before it connects, in one function.

Why one function: `config check` used to say OK for configs that `run` then refused with exit 78
(a missing or short HMAC key file, a missing password file), because `run` only met those files
deep inside building the publisher, and a few more (a missing chirp profile, a state directory
that cannot be created) ended in a traceback and exit 1, which systemd restart-loops. `run`,
`config check` and `doctor` now all call `preflight`/`startup_problems`, so they cannot disagree:
what `run` refuses, `config check` refuses first, with the same words, and exit 78.

Each check uses the very function `run` uses, so the two cannot drift apart:
- the broker password when `mqtt.username` is set (`cuas_node.config.read_password`);
- the TLS files when `mqtt.tls` is on (each readable, then `cuas_node.publish.client.tls_context`);
- the commands HMAC key when commands are enabled (`cuas_node.commands.read_key`: >= 16 bytes);
- every enabled sensor's driver (`cuas_node.driver_factory.build_driver`: static clutter map,
  chirp profile, array geometry, FPV channels; building a driver opens no port);
- `node.state_dir`, `node.spool_dir` and, when recording, `record.path`'s folder: directories this
  user can create or write (the publisher creates them before it connects).

What is not refused, only warned about (`run` logs each warning once; `doctor` turns them into
WARN lines, and the plaintext password into a FAIL): a secret file that other users can read or
that has an unexpected owner, a password sent without TLS to another machine, keys that the
node ignores (a password file without a user name, TLS files with TLS off), and an acoustic
array's site background learnt on another path than the array's pipeline (its threshold was set
on other scores: `driver_factory.background_mismatch`).

One documented owner and mode for every secret file (docs/deployment.md, systemd/install.sh):
`root:cuas 0640`. root owns it so the service cannot rewrite its own secrets; the service's group
reads it; nobody else can. A file owned by the service user with mode 0600 is accepted too.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cuas_node.config import (
    Config,
    ConfigError,
    GenericRadarSensor,
    TiMmwaveSensor,
    password_path,
    read_password,
)
from cuas_node.publish.state_dir import directory_problem as state_directory_problem

SERVICE_USER = "cuas"  # the unit's User= and Group= (systemd/cuas-node.service, install.sh)
SECRET_OWNER = f"root:{SERVICE_USER}"
SECRET_MODE = 0o640
PLAINTEXT_FIX = (
    "set mqtt.tls = true (usually port 8883, with mqtt.ca_file) or use a broker on this machine "
    "(mqtt.host = localhost)"
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True)
class Identity:
    """Who may own a secret file (`uids`) and whose group may read it (`gids`)."""

    uids: frozenset[int]
    gids: frozenset[int]

    @classmethod
    def service(cls) -> Identity:
        """Root, this process and the service user `cuas` (when it exists): under systemd this
        process is the service; `config check` and `doctor` may run as root or as a technician and
        must judge the files as the service will (root:cuas 0640 is fine for all three)."""
        uids, gids = {0, os.geteuid()}, {os.getegid()}
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(SERVICE_USER)
            uids.add(entry.pw_uid)
            gids.add(entry.pw_gid)
        with contextlib.suppress(KeyError):
            gids.add(grp.getgrnam(SERVICE_USER).gr_gid)
        return cls(frozenset(uids), frozenset(gids))


def preflight(config: Config, source: str, env: Mapping[str, str] = os.environ) -> list[str]:
    """Every check `run` makes before connecting: raises `ConfigError` (exit 78) listing every
    problem, else returns the warnings (to log once, or print)."""
    problems, notes = startup_problems(config, env)
    if problems:
        raise ConfigError(problems, source)
    warnings = notes + [text for _key, _path, text in secret_file_warnings(config, Identity.service())]
    plain = plaintext_password(config, env)
    if plain is not None:
        warnings.append(f"mqtt.tls (env CUAS_MQTT__TLS): {plain}; {PLAINTEXT_FIX}")
    return warnings


def startup_problems(config: Config, env: Mapping[str, str] = os.environ) -> tuple[list[str], list[str]]:
    """(problems `run` refuses to start with, notes on keys the node ignores)."""
    problems: list[str] = []
    notes: list[str] = []
    _check_password(config, env, problems, notes)
    _check_tls(config, problems, notes)
    _check_commands(config, problems)
    _check_sensors(config, problems, notes)
    _check_directories(config, problems)
    _check_web(config, problems, notes)
    _check_outputs(config, problems)
    return problems, notes


# -- secrets ----------------------------------------------------------------------------------


def secret_files(config: Config) -> list[tuple[str, Path]]:
    """(`key (env NAME)`, path) of each secret file the node would read."""
    mqtt = config.mqtt
    files: list[tuple[str, Path]] = []
    if mqtt.username is not None and mqtt.password_file is not None:
        files.append(("mqtt.password_file (env CUAS_MQTT__PASSWORD_FILE)", mqtt.password_file))
    if mqtt.tls and mqtt.cert_file is not None and mqtt.key_file is not None:
        files.append(("mqtt.key_file (env CUAS_MQTT__KEY_FILE)", mqtt.key_file))
    key_file = mqtt.commands.hmac_key_file
    if mqtt.commands.enabled and key_file is not None:
        files.append(("mqtt.commands.hmac_key_file (env CUAS_MQTT__COMMANDS__HMAC_KEY_FILE)", key_file))
    web = config.web
    if web.enabled and web.password_file is not None:
        files.append(("web.password_file (env CUAS_WEB__PASSWORD_FILE)", web.password_file))
    if web.enabled and web.tls_key_file is not None:
        files.append(("web.tls_key_file (env CUAS_WEB__TLS_KEY_FILE)", web.tls_key_file))
    for index, cot in enumerate(config.outputs.cot):
        if cot.enabled and cot.url.startswith("tls://") and cot.tls_key_file is not None:
            files.append((f"outputs.cot[{index}].tls_key_file (env CUAS_OUTPUTS__COT)", cot.tls_key_file))
    sapient = config.outputs.sapient
    if sapient is not None and sapient.enabled and sapient.tls and sapient.tls_key_file is not None:
        files.append(("outputs.sapient.tls_key_file (env CUAS_OUTPUTS__SAPIENT)", sapient.tls_key_file))
    return files


def secret_file_issues(info: os.stat_result, identity: Identity) -> list[str]:
    """What is wrong with a secret file's owner and mode (empty: fine). Others may never read or
    write it, its group may only read it and only when that group is the service's, and it is
    owned by root or the service user."""
    mode = stat.S_IMODE(info.st_mode)
    issues: list[str] = []
    if mode & 0o004:
        issues.append("every user can read it")
    if mode & 0o002:
        issues.append("every user can write it")
    if mode & 0o020:
        issues.append(f"group {_group(info.st_gid)} can write it")
    if mode & 0o040 and info.st_gid not in identity.gids:
        issues.append(f"group {_group(info.st_gid)} can read it")
    if info.st_uid not in identity.uids:
        issues.append(f"owned by {_user(info.st_uid)}, not root or the service user")
    return issues


def describe_file(info: os.stat_result) -> str:
    """`root:cuas 0640`."""
    return f"{_user(info.st_uid)}:{_group(info.st_gid)} {stat.S_IMODE(info.st_mode):04o}"


def secret_fix(path: Path) -> str:
    return f"sudo chown {SECRET_OWNER} {path} && sudo chmod {SECRET_MODE:04o} {path}"


def secret_file_warnings(config: Config, identity: Identity) -> list[tuple[str, Path, str]]:
    """(key, path, warning) for each existing secret file with a loose owner or mode."""
    out: list[tuple[str, Path, str]] = []
    for key, path in secret_files(config):
        try:
            info = path.stat()
        except OSError:
            continue  # a missing or unreadable file is a problem of `startup_problems`
        issues = secret_file_issues(info, identity)
        if issues:
            text = (
                f"{key}: {path} is {describe_file(info)}: {'; '.join(issues)}; "
                f"make it {SECRET_OWNER} {SECRET_MODE:04o}: {secret_fix(path)}"
            )
            out.append((key, path, text))
    return out


def is_loopback(host: str) -> bool:
    """A broker on this machine (no network between): `localhost`, 127.0.0.0/8, ::1. Names are
    not resolved, so the answer does not depend on DNS."""
    name = host.strip().strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name in LOOPBACK_NAMES or name.endswith(".localhost")
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def plaintext_password(config: Config, env: Mapping[str, str] = os.environ) -> str | None:
    """Why the broker password would cross the network unencrypted (`PLAINTEXT_FIX` is the
    remedy), or None when it would not."""
    mqtt = config.mqtt
    if mqtt.username is None or mqtt.tls or is_loopback(mqtt.host) or password_path(mqtt, env) is None:
        return None
    return (
        f"the password of MQTT user {mqtt.username!r} goes to {mqtt.host}:{mqtt.port} unencrypted "
        "(mqtt.tls is false): anyone on the network path can read it"
    )


# -- the checks -------------------------------------------------------------------------------


def _check_password(config: Config, env: Mapping[str, str], problems: list[str], notes: list[str]) -> None:
    mqtt = config.mqtt
    if mqtt.username is None:
        if mqtt.password_file is not None:
            notes.append(
                "mqtt.password_file (env CUAS_MQTT__PASSWORD_FILE): ignored: mqtt.username is not set, "
                "so the node connects without credentials"
            )
        return
    try:
        password = read_password(mqtt, env)
    except ConfigError as exc:
        problems += [_with_path(p, exc.source) for p in exc.problems]
        return
    if password == "":
        notes.append(
            f"mqtt.password_file (env CUAS_MQTT__PASSWORD_FILE): {password_path(mqtt, env)} is empty: "
            "the node sends an empty password"
        )


def _check_tls(config: Config, problems: list[str], notes: list[str]) -> None:
    mqtt = config.mqtt
    named = [(key, getattr(mqtt, key)) for key in ("ca_file", "cert_file", "key_file")]
    named = [(key, path) for key, path in named if path is not None]
    if not mqtt.tls:
        if named:
            keys = ", ".join(f"mqtt.{key}" for key, _ in named)
            notes.append(f"{keys}: ignored: mqtt.tls (env CUAS_MQTT__TLS) is false")
        return
    if mqtt.key_file is not None and mqtt.cert_file is None:
        notes.append("mqtt.key_file (env CUAS_MQTT__KEY_FILE): ignored without mqtt.cert_file")
    before = len(problems)
    for key, path in named:
        reason = _unreadable(path)
        if reason is not None:
            problems.append(f"mqtt.{key} (env CUAS_MQTT__{key.upper()}): {path}: {reason}")
    if len(problems) > before:
        return
    from cuas_node.publish.client import tls_context  # paho: only when TLS is on

    try:
        tls_context(mqtt)
    except ConfigError as exc:
        problems += exc.problems


def _check_outputs(config: Config, problems: list[str]) -> None:
    """A TAK or SAPIENT output over TLS reads its certificate, key and CA at every connection: unreadable
    ones would only show as an output that never connects, so `run` refuses them up front."""
    for index, cot in enumerate(config.outputs.cot):
        if not cot.enabled or not cot.url.startswith("tls://"):
            continue
        for key in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
            path = getattr(cot, key)
            reason = _unreadable(path) if path is not None else None
            if reason is not None:
                problems.append(f"outputs.cot[{index}].{key} (env CUAS_OUTPUTS__COT): {path}: {reason}")
    sapient = config.outputs.sapient
    if sapient is not None and sapient.enabled and sapient.tls:
        for key in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
            path = getattr(sapient, key)
            reason = _unreadable(path) if path is not None else None
            if reason is not None:
                problems.append(f"outputs.sapient.{key} (env CUAS_OUTPUTS__SAPIENT): {path}: {reason}")


def _check_commands(config: Config, problems: list[str]) -> None:
    commands = config.mqtt.commands
    if not commands.enabled or commands.hmac_key_file is None:
        return
    from cuas_node.commands import read_key

    try:
        read_key(commands.hmac_key_file)
    except ConfigError as exc:
        problems += [_with_path(p, exc.source) for p in exc.problems]


def _check_sensors(config: Config, problems: list[str], notes: list[str]) -> None:
    """Build each enabled sensor's driver as `run` does (no port is opened) and drop it; a note
    for an acoustic background learnt on another path than the array's (`background_mismatch`)."""
    if not any(s.enabled for s in config.sensors):
        return
    from cuas_node.driver_factory import UnsupportedSensor, background_mismatch, build_driver
    from cuas_node.fusion_setup import read_reflectors
    from cuas_node.kernel.clock import SystemClock

    clock = SystemClock()
    for index, sensor in enumerate(config.sensors):
        if not sensor.enabled:
            continue
        if isinstance(sensor, TiMmwaveSensor | GenericRadarSensor):
            try:
                read_reflectors(sensor)
            except ConfigError as exc:
                problems += [f"sensors[{index}] (env CUAS_SENSORS): {p}" for p in exc.problems]
        try:
            driver = build_driver(sensor, clock)
        except UnsupportedSensor as exc:
            problems.append(f"sensors[{index}] (env CUAS_SENSORS): {exc}")
        except (OSError, ValueError) as exc:
            problems.append(f"sensors[{index}] (env CUAS_SENSORS): sensor {sensor.id!r}: {exc}")
        else:
            if word := background_mismatch(driver):
                notes.append(
                    f"sensors[{index}] (env CUAS_SENSORS): sensor {sensor.id!r}: background_file: {word}"
                )


def _check_directories(config: Config, problems: list[str]) -> None:
    targets = [
        ("node.state_dir (env CUAS_NODE__STATE_DIR)", config.node.state_dir),
        ("node.spool_dir (env CUAS_NODE__SPOOL_DIR)", config.node.spool_dir),
    ]
    if config.record.enabled:
        targets.append(("record.path (env CUAS_RECORD__PATH)", config.record.path.parent))
    for key, path in targets:
        reason = directory_problem(path)
        if reason is not None:
            problems.append(f"{key}: {reason}")


def directory_problem(path: Path) -> str | None:
    """Why the node cannot write in `path` (creating it if need be), with the fix: the very probe
    `run` makes at start (`cuas_node.publish.state_dir`), without creating anything."""
    return state_directory_problem(path, create=False)


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb"):
            return None
    except OSError as exc:
        return f"cannot read: {exc.strerror}"


def _with_path(problem: str, path: str) -> str:
    """`key (env X): reason` → `key (env X): PATH: reason` (the file is named once)."""
    if path in problem:
        return problem
    head, sep, rest = problem.partition("): ")
    return f"{head}): {path}: {rest}" if sep else f"{problem} ({path})"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _check_web(config: Config, problems: list[str], notes: list[str]) -> None:
    """The live view's password and TLS files, read as the web server will (`cuas_node.web.auth`);
    a note when the password would cross the network in clear."""
    web = config.web
    if not web.enabled:
        return
    if web.password_file is not None and web.tls_cert_file is None and not is_loopback(web.bind):
        notes.append(
            f"web.tls_cert_file (env CUAS_WEB__TLS_CERT_FILE): the live view on {web.bind}:{web.port} "
            "takes its password without TLS: anyone on the network path can read it; "
            "set tls_cert_file and tls_key_file"
        )
    from cuas_node.web.auth import read_web_password, tls_context

    try:
        if web.password_file is not None:
            read_web_password(web.password_file)
        tls_context(web)
    except ConfigError as exc:
        problems.extend(exc.problems)
