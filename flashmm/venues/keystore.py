"""The signing key of a live venue: from the environment or an encrypted keystore (AES-256-GCM under a key
derived from a passphrase with scrypt). Venue-neutral: Sei (x/dex, Cosmos) and Citrex (Sei EVM) both sign
with a secp256k1 key; each venue names its own environment variables (`KeySource`: FLASHMM_SEI_* and
FLASHMM_CITREX_*), and one keystore file serves either (the file records the key's Sei bech32 address; the
same key's EVM address is derived from the key once opened).

Why: a hex key in an environment variable is visible to anything that can read the process environment
(`/proc/PID/environ`, `docker inspect`, a shell history). A keystore file keeps the key encrypted at rest;
only the passphrase has to be supplied at start (environment or an interactive prompt).

File (JSON, version 1; every byte string is hex):

    {"version": 1, "kdf": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<16 bytes>",
     "nonce": "<12 bytes>", "ciphertext": "<32 bytes>", "tag": "<16 bytes>", "address": "sei1..."}

* key = scrypt(NFC(passphrase), salt, 32 bytes, N=n, r, p); the scrypt parameters are stored so a file
  stays readable if the defaults change. Files asking for less than N=2**14 (too cheap to guess) or for
  more than 256 MiB of scrypt memory (a hostile file must not exhaust the host) are refused.
* ciphertext, tag = AES-256-GCM(key, nonce).encrypt(raw 32-byte secp256k1 key), with associated data
  ``b"flashmm-sei-keystore/v1|" + address``: the address is in clear (so `flashmm keystore address`
  needs no passphrase) yet authenticated, so swapping it for another account's makes opening fail.
  The scrypt parameters and salt are bound implicitly: changing any of them changes the derived key.
* After decryption the key's own address is compared with the stored one (a second, independent check).

A wrong passphrase and a corrupted file cannot be told apart (GCM only says "not authentic"), hence the one
message "wrong passphrase or corrupted keystore". The file is written with mode 0600 through a temporary
file and an atomic rename, and `open_keystore` warns (log + `keystore_permission_warning`) when group or
others can read it. Neither the key nor the passphrase ever appears in an exception message or a log line.

Command line (wired into `flashmm` by `add_cli` / `run_cli`):
  flashmm keystore create PATH [--overwrite] [--scrypt-n N]   key from env FLASHMM_SEI_PRIVATE_KEY or
      FLASHMM_CITREX_PRIVATE_KEY or a hidden prompt; passphrase from env FLASHMM_SEI_KEYSTORE_PASSPHRASE
      (or FLASHMM_CITREX_KEYSTORE_PASSPHRASE) or a hidden prompt asked twice
  flashmm keystore address PATH                                the account address, no passphrase needed
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import stat
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import ecdsa
from cosmpy.crypto.address import Address
from cosmpy.crypto.keypairs import PrivateKey
from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt

from flashmm.telemetry.logging import get_logger, register_secret

VERSION = 1
KDF = "scrypt"
DEFAULT_N = 2**15
DEFAULT_R = 8
DEFAULT_P = 1
MIN_N = 2**14  # below this a passphrase is too cheap to guess offline
MAX_SCRYPT_BYTES = 256 * 2**20  # scrypt memory is 128 * n * r bytes; a hostile file must not exhaust the host
MAX_R = 32
MAX_P = 16
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
AAD_PREFIX = b"flashmm-sei-keystore/v1|"

_WRONG = "wrong passphrase or corrupted keystore"
_log = get_logger("keystore")
_SECP256K1_ORDER = ecdsa.SECP256k1.order


@dataclass(frozen=True)
class KeySource:
    """Where a venue's signing key comes from: a hex key in `private_key`, else the keystore file named by
    `keystore`, opened with the passphrase in `passphrase` (or asked at a hidden prompt)."""

    label: str  # "Sei", "Citrex": named in every message
    private_key: str
    keystore: str
    passphrase: str


SEI_KEYS = KeySource("Sei", "FLASHMM_SEI_PRIVATE_KEY", "FLASHMM_SEI_KEYSTORE", "FLASHMM_SEI_KEYSTORE_PASSPHRASE")
CITREX_KEYS = KeySource("Citrex", "FLASHMM_CITREX_PRIVATE_KEY", "FLASHMM_CITREX_KEYSTORE",
                        "FLASHMM_CITREX_KEYSTORE_PASSPHRASE")


def parse_private_key_hex(private_key_hex: str) -> bytes:
    """32 raw bytes of a hex secp256k1 key (an optional 0x prefix); ValueError never echoes the key."""
    text = private_key_hex.strip()
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if len(text) != 64:
        raise ValueError("private key must be 32 bytes as 64 hex characters")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError("private key is not valid hex") from None
    if not 0 < int.from_bytes(raw, "big") < _SECP256K1_ORDER:
        raise ValueError("private key is out of range for secp256k1")
    return raw


def load_private_key(source: KeySource = SEI_KEYS, passphrase_prompt: Callable[[], str] | None = None) -> str:
    """The signing key as 64 hex characters.

    From env `source.private_key` (hex), or from the keystore at env `source.keystore`, opened with env
    `source.passphrase` or, when that is unset or empty, `passphrase_prompt()` (the console and the daemon
    pass one that reads a hidden line). Raises RuntimeError naming both variables when neither is set or
    when both are (which key signs is the operator's explicit choice, not a precedence rule), KeystoreError
    (a RuntimeError) when the keystore cannot be opened, ValueError for a malformed hex key; no message ever
    holds the key or the passphrase.
    """
    raw = os.environ.get(source.private_key, "").strip()
    path = os.environ.get(source.keystore, "").strip()
    if raw and path:  # which key signs real orders is never left to a precedence rule nobody remembers
        raise RuntimeError(f"two key sources are set, {source.private_key} and {source.keystore}={path}: "
                           f"unset the one that should not sign")
    if raw:
        register_secret(raw)
        key = parse_private_key_hex(raw).hex()
        register_secret(key)
        return key
    if not path:
        raise RuntimeError(f"no {source.label} signing key: set {source.private_key} (hex secp256k1 private key) or "
                           f"{source.keystore} (an encrypted keystore file, see `flashmm keystore create`)")
    keystore_address(path)  # a missing or malformed file is reported before anyone is asked for a passphrase
    passphrase = os.environ.get(source.passphrase, "")
    if not passphrase:
        if passphrase_prompt is None:
            raise RuntimeError(f"{source.keystore} is set but no passphrase: set {source.passphrase} "
                               f"or start interactively to be asked for it")
        passphrase = passphrase_prompt()
    register_secret(passphrase)
    key = open_keystore(path, passphrase)
    register_secret(key)
    return key


class KeystoreError(RuntimeError):
    """A keystore cannot be written or opened; the message names the file and never holds a secret."""


# ------------------------------------------------------------------------------------------- crypto


def _check_kdf_params(n: Any, r: Any, p: Any) -> tuple[int, int, int]:
    """Validated scrypt parameters: n a power of two in [MIN_N, memory cap], 1 <= r <= 32, 1 <= p <= 16."""
    for name, v in (("n", n), ("r", r), ("p", p)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise KeystoreError(f"scrypt parameter {name} must be an integer")
    if n < MIN_N or n & (n - 1):
        raise KeystoreError(f"scrypt n must be a power of two >= {MIN_N} (got {n})")
    if not 1 <= r <= MAX_R or not 1 <= p <= MAX_P:
        raise KeystoreError(f"scrypt r must be in [1, {MAX_R}] and p in [1, {MAX_P}] (got r={r}, p={p})")
    if 128 * n * r > MAX_SCRYPT_BYTES:
        raise KeystoreError(f"scrypt n={n}, r={r} needs more than {MAX_SCRYPT_BYTES >> 20} MiB of memory")
    return n, r, p


def _passphrase_bytes(passphrase: str) -> bytes:
    """NFC-normalised UTF-8, so the same passphrase typed through different input methods opens the file."""
    if not isinstance(passphrase, str) or not passphrase.strip():
        raise KeystoreError("empty passphrase refused")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return scrypt(_passphrase_bytes(passphrase), salt, KEY_BYTES, N=n, r=r, p=p)  # type: ignore[return-value]


def _aad(address: str) -> bytes:
    return AAD_PREFIX + address.encode("ascii")


def address_of(private_key_hex: str) -> str:
    """The bech32 'sei' account address of a hex secp256k1 key (ValueError without echoing a bad key)."""
    return str(Address(PrivateKey(parse_private_key_hex(private_key_hex)).public_key, prefix="sei"))


# ------------------------------------------------------------------------------------------- write


def create_keystore(path: str | os.PathLike[str], private_key_hex: str, passphrase: str, *, n: int = DEFAULT_N,
                    r: int = DEFAULT_R, p: int = DEFAULT_P, overwrite: bool = False) -> str:
    """Encrypt `private_key_hex` under `passphrase` into `path` (mode 0600, atomic). Returns the address.

    Refuses an empty passphrase, a malformed key and, unless `overwrite`, an existing file: losing the
    only copy of a funded key to a typo in a path is not recoverable.
    """
    target = Path(path)
    n, r, p = _check_kdf_params(n, r, p)
    pw = _passphrase_bytes(passphrase)
    try:
        raw = parse_private_key_hex(private_key_hex)
    except ValueError as exc:
        raise KeystoreError(f"keystore {target}: {exc}") from None
    address = address_of(raw.hex())
    if target.exists() and not overwrite:
        raise KeystoreError(f"keystore {target}: already exists (pass overwrite to replace it)")
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    key = scrypt(pw, salt, KEY_BYTES, N=n, r=r, p=p)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
    cipher.update(_aad(address))
    ciphertext, tag = cipher.encrypt_and_digest(raw)
    doc = {"version": VERSION, "kdf": KDF, "n": n, "r": r, "p": p, "salt": salt.hex(), "nonce": nonce.hex(),
           "ciphertext": ciphertext.hex(), "tag": tag.hex(), "address": address}
    _write_atomic(target, (json.dumps(doc, indent=2) + "\n").encode("ascii"), overwrite)
    return address


def _write_atomic(target: Path, data: bytes, overwrite: bool) -> None:
    """Write a 0600 temporary file beside `target`, fsync it, then move it into place in one step.

    Without `overwrite` the move is a hard link, which fails if `target` appeared meanwhile (no race
    can replace an existing keystore); with it, os.replace. Either way a reader sees the old file or the
    whole new one, never a partial write.
    """
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise KeystoreError(f"keystore {target}: already exists (pass overwrite to replace it)") from None
            except OSError:  # a filesystem without hard links: the existence check above has to do
                if target.exists():
                    raise KeystoreError(f"keystore {target}: already exists (pass overwrite to replace it)") from None
                os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise KeystoreError(f"keystore {target}: cannot write: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX: a directory entry is persisted by syncing the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- read


def keystore_permission_warning(path: str | os.PathLike[str]) -> str | None:
    """A warning line when group or others may read the keystore, None when only the owner can."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return (f"keystore {path} is accessible by group/others (mode {mode:04o}): "
                f"run chmod 600 {path}")
    return None


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeystoreError(f"keystore {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"keystore {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        raise KeystoreError(f"keystore {path}: malformed (not JSON)") from None
    if not isinstance(doc, dict):
        raise KeystoreError(f"keystore {path}: malformed (not a JSON object)")
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise KeystoreError(f"keystore {path}: unsupported version {version!r} (this build reads version {VERSION})")
    if doc.get("kdf") != KDF:
        raise KeystoreError(f"keystore {path}: unsupported kdf {doc.get('kdf')!r} (this build reads {KDF!r})")
    return doc


def _hex_field(doc: dict[str, Any], name: str, path: Path, sizes: tuple[int, ...]) -> bytes:
    value = doc.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) not in sizes:
        want = " or ".join(str(s) for s in sizes)
        raise KeystoreError(f"keystore {path}: malformed field {name!r} (want {want} bytes as hex)")
    return raw


def _address_field(doc: dict[str, Any], path: Path) -> str:
    address = doc.get("address")
    if not isinstance(address, str) or not address.startswith("sei1") or not address.isascii() or len(address) > 90:
        raise KeystoreError(f"keystore {path}: malformed field 'address' (want a bech32 sei1... address)")
    return address


def keystore_address(path: str | os.PathLike[str]) -> str:
    """The account address a keystore holds, read without the passphrase (it is stored in clear)."""
    p = Path(path)
    return _address_field(_read_doc(p), p)


def open_keystore(path: str | os.PathLike[str], passphrase: str) -> str:
    """Decrypt a keystore: the private key as 64 lowercase hex characters.

    KeystoreError for a missing or malformed file, an unsupported version or kdf, and a wrong passphrase
    or tampered file. A file readable by group/others still opens, with a logged warning.
    """
    p = Path(path)
    doc = _read_doc(p)
    warning = keystore_permission_warning(p)
    if warning:
        _log.warning("keystore_permissions", path=str(p), warning=warning)
    try:
        n, r, pp = _check_kdf_params(doc.get("n"), doc.get("r"), doc.get("p"))
    except KeystoreError as exc:
        raise KeystoreError(f"keystore {p}: {exc}") from None
    salt = _hex_field(doc, "salt", p, tuple(range(SALT_BYTES, 65)))
    nonce = _hex_field(doc, "nonce", p, (NONCE_BYTES,))
    ciphertext = _hex_field(doc, "ciphertext", p, (KEY_BYTES,))
    tag = _hex_field(doc, "tag", p, (TAG_BYTES,))
    address = _address_field(doc, p)
    key = _derive(passphrase, salt, n, r, pp)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
    cipher.update(_aad(address))
    try:
        raw = cipher.decrypt_and_verify(ciphertext, tag)
    except ValueError:
        raise KeystoreError(f"keystore {p}: {_WRONG}") from None
    try:
        private_key_hex = parse_private_key_hex(raw.hex()).hex()
        matches = address_of(private_key_hex) == address
    except ValueError:
        matches = False
    if not matches:  # authentic yet inconsistent: written by something else than create_keystore
        raise KeystoreError(f"keystore {p}: {_WRONG}")
    register_secret(private_key_hex)
    register_secret(passphrase)
    return private_key_hex


# ------------------------------------------------------------------------------------------- CLI


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """`flashmm keystore create|address` on an argparse subparsers object; dispatch with run_cli(args)."""
    ks = subparsers.add_parser("keystore", help="create or inspect the encrypted signing-key keystore (Sei, Citrex)")
    ks_sub = ks.add_subparsers(dest="keystore_command", required=True)
    create = ks_sub.add_parser(
        "create", help=f"encrypt a key (from env {SEI_KEYS.private_key} or {CITREX_KEYS.private_key}, or a hidden "
                       f"prompt) into a 0600 keystore file")
    create.add_argument("path", help="keystore file to write")
    create.add_argument("--overwrite", action="store_true", help="replace an existing keystore")
    create.add_argument("--scrypt-n", type=int, default=DEFAULT_N,
                        help=f"scrypt cost, a power of two >= {MIN_N} (default {DEFAULT_N})")
    addr = ks_sub.add_parser("address", help="print a keystore's account address (no passphrase needed)")
    addr.add_argument("path", help="keystore file")
    return ks


def _ask_passphrase_twice(prompt: Callable[[str], str]) -> str:
    first = prompt("Keystore passphrase: ")
    if not first.strip():
        raise KeystoreError("empty passphrase refused")
    if prompt("Repeat passphrase: ") != first:
        raise KeystoreError("the two passphrases differ")
    return first


def run_cli(args: argparse.Namespace, *, prompt: Callable[[str], str] | None = None) -> int:
    """Run `flashmm keystore ...`: 0 on success (the address on stdout), 2 with one message on stderr.

    `prompt` reads a hidden line (getpass.getpass by default; tests pass their own).
    """
    ask = prompt or getpass.getpass
    try:
        if args.keystore_command == "address":
            print(keystore_address(args.path))
            return 0
        if args.keystore_command == "create":
            from_env = {os.environ.get(src.private_key, "").strip() for src in (SEI_KEYS, CITREX_KEYS)} - {""}
            for value in from_env:
                register_secret(value)
            if len(from_env) > 1:
                raise KeystoreError(f"{SEI_KEYS.private_key} and {CITREX_KEYS.private_key} hold different keys: "
                                    f"set one")
            key = from_env.pop() if from_env else ask("Private key (64 hex characters): ").strip()
            register_secret(key)
            passphrase = (os.environ.get(SEI_KEYS.passphrase, "") or os.environ.get(CITREX_KEYS.passphrase, "")
                          or _ask_passphrase_twice(ask))
            register_secret(passphrase)
            address = create_keystore(args.path, key, passphrase, n=args.scrypt_n, overwrite=args.overwrite)
            print(address)
            print(f"wrote {args.path} (mode 0600); start with {SEI_KEYS.keystore}={args.path} "
                  f"or {CITREX_KEYS.keystore}={args.path}", file=sys.stderr)
            return 0
        raise KeystoreError(f"unknown keystore command {args.keystore_command!r}")
    except (KeystoreError, EOFError) as exc:
        print(f"flashmm keystore: {exc or 'no input'}", file=sys.stderr)
        return 2
