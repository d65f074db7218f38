"""Security checks shared by config loading, the tests and CI.

* `world_readable_secret_warning(path)`: a config file that others may read must not hold credentials.
  The loader calls it and logs the line it returns (it does not refuse to start: the operator may be on a
  single-user machine, but should know).
* `find_secrets(text, name)`: the rule for "no default password, token or private key is committed"
  (tests/test_security.py runs it over every file git tracks). What counts as a secret:
    1. an assignment (``name = "v"``, ``name="v"``, ``"name": "v"``, ``name: v``, ``NAME=v``) whose NAME
       contains password, passwd, passphrase, secret, token, api_key/apikey, private_key/privkey or
       mnemonic (case-insensitive) and whose VALUE is a non-empty literal that is not a placeholder.
       Unquoted values count outside Python files only (in Python an unquoted value is an expression,
       ``token=cfg.token``, not a literal);
    2. a URL carrying a password (``scheme://user:<password>@host``) that is not a placeholder;
    3. 64 hexadecimal characters (the shape of a secp256k1 private key or a hex API token), unless the
       same line says sha256/sha-256/digest (a checksum);
    4. a PEM private key block (``-----BEGIN ... PRIVATE KEY-----``).
  Placeholders: an empty value; an interpolation (``${VAR}``, ``${VAR:?msg}``, ``$VAR``, and
  ``${VAR:-default}`` only when the default is itself a placeholder: a literal default is a default
  secret); an ``<angle-bracket>`` hint; an environment variable NAME (upper-case letters, digits and underscores
  with at least one underscore, e.g. ``ENV_PRIVATE_KEY = "FLASHMM_SEI_PRIVATE_KEY"``).
  ``changeme``, ``admin`` or ``password`` are NOT placeholders: a default password is what this finds.
* `verify_audit_log(path)`: the audit log's hash chain (see flashmm.telemetry.logging.AuditLog).
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, Iterator

from flashmm.telemetry.logging import verify_audit_log

__all__ = ["find_secrets", "is_placeholder", "verify_audit_log", "world_readable_secret_warning"]

SECRET_NAME = re.compile(r"pass(word|wd|phrase)|secret|token|api_?key|priv(ate)?_?key|mnemonic", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
_SHELL_VAR = re.compile(r"^\$[A-Za-z_][A-Za-z0-9_]*$")
# ${NAME}, ${NAME:?message}, ${NAME:-default} (compose / shell); the default is checked recursively
_INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?P<op>:?[-?+=])(?P<rest>.*))?\}$", re.DOTALL)
# scheme://[user]:<password>@ ; an interpolated password may hold spaces (${VAR:?set VAR in .env})
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@\"']*:(?P<pw>\$\{[^}]*\}|[^@\s/\"']+)@", re.IGNORECASE)
_NAME = r"(?P<name>[A-Za-z_][\w.-]*)"
# a quoted literal after = or :, with an optional type annotation between the name and the =
_QUOTED = re.compile(_NAME + r"[\"']?\s*(?::\s*[\w\[\]|., ]+?\s*=|[:=])\s*(?P<q>[\"'])(?P<value>[^\"'\n]*)(?P=q)")
# an unquoted value at the start of a line, up to a trailing comment: .env, YAML, compose, shell, ENV
_UNQUOTED = re.compile(r"^\s*(?:-\s+)?(?:export\s+|ENV\s+)?" + _NAME
                       + r"\s*[:=]\s*(?P<value>[^\s#\"'].*?)\s*(?:\s#.*)?$")
_HEX64 = re.compile(r"(?<![0-9a-fA-F])(?:0x)?[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_CHECKSUM_WORD = re.compile(r"sha-?256|digest", re.IGNORECASE)
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def is_placeholder(value: str) -> bool:
    """True for a value that stands for a secret without being one (see the module docstring)."""
    v = value.strip()
    if not v or _SHELL_VAR.match(v) or _ENV_NAME.match(v) or (v.startswith("<") and v.endswith(">")):
        return True
    m = _INTERPOLATION.match(v)
    if m is None:
        return False
    if m.group("op") in ("-", ":-", "=", ":=", "+", ":+"):  # a value written in the file: a placeholder too?
        return is_placeholder(m.group("rest"))
    return True


def _credential_hits(line: str, python: bool) -> Iterator[str]:
    """Names (never values) of the credentials on one line, by rules 1 and 2."""
    for m in _URL_PASSWORD.finditer(line):
        if not is_placeholder(m.group("pw")):
            yield "a URL with a password"
    for m in _QUOTED.finditer(line):
        if SECRET_NAME.search(m.group("name")) and not is_placeholder(m.group("value")):
            yield m.group("name")
    if not python:
        m = _UNQUOTED.match(line)
        if m and SECRET_NAME.search(m.group("name")) and not is_placeholder(m.group("value")):
            yield m.group("name")


def find_secrets(text: str, name: str = "") -> list[str]:
    """'NAME:LINE: what' for every committed secret in `text` by the rule of the module docstring.

    The secret's value is never part of the message.
    """
    python = name.endswith(".py")
    found: list[str] = []
    for i, line in enumerate(text.splitlines(), start=1):
        for what in dict.fromkeys(_credential_hits(line, python)):
            found.append(f"{name}:{i}: {what} has a non-placeholder value")
        if _HEX64.search(line) and not _CHECKSUM_WORD.search(line):
            found.append(f"{name}:{i}: 64 hex characters (a private key or token?)")
        if _PEM_PRIVATE.search(line):
            found.append(f"{name}:{i}: a PEM private key")
    return found


# ------------------------------------------------------------------------------------------- config file


def _walk_credentials(value: Any, key: str = "") -> Iterator[str]:
    """Dotted key names of credentials in parsed TOML: secret-named keys with a value, URLs with a password."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_credentials(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_credentials(v, f"{key}[{i}]")
    elif isinstance(value, str):
        leaf = key.rsplit(".", 1)[-1]
        if SECRET_NAME.search(leaf) and not is_placeholder(value):
            yield key
        elif any(not is_placeholder(m.group("pw")) for m in _URL_PASSWORD.finditer(value)):
            yield key


def _credentials_in(text: str) -> list[str]:
    """Where a config file holds credentials: TOML keys when it parses as TOML, else line numbers."""
    try:
        return list(dict.fromkeys(_walk_credentials(tomllib.loads(text))))
    except tomllib.TOMLDecodeError:
        lines = enumerate(text.splitlines(), start=1)
        return [f"line {i}" for i, line in lines if any(_credential_hits(line, False))]


def world_readable_secret_warning(path: str | os.PathLike[str]) -> str | None:
    """A warning line when `path` is readable by others (mode & 0o004) AND holds credentials; else None.

    Credentials: a URL with ``user:password@``, or a key named like token/password/secret/api_key/private
    key/mnemonic with a non-empty, non-placeholder value. The line names the file, the keys (never the
    values) and the fix. A missing or unreadable file gives None: reporting it is the loader's job.
    """
    p = Path(path)
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
        if not mode & stat.S_IROTH:
            return None
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    where = _credentials_in(text)
    if not where:
        return None
    return (f"config file {p} is readable by other users (mode {mode:04o}) and holds credentials "
            f"({', '.join(where)}): run chmod 600 {p}, or move the secrets to FLASHMM_* environment variables")
