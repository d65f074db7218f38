"""The encrypted Sei keystore: round trip, authentication (passphrase, ciphertext, address), the file's
mode and atomic no-overwrite write, `load_private_key`'s order of sources, the CLI, and no secret in logs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat

import pytest
import structlog
from structlog.testing import capture_logs

from flashmm.telemetry.logging import configure_logging, get_logger
from flashmm.venues import keystore as ks
from flashmm.venues.sei import tx as t

FAST_N = ks.MIN_N  # the least cost a keystore accepts; keeps each open at ~50 ms


def random_key() -> str:
    """A fresh valid secp256k1 key per test, so registered secrets never leak from one test to another."""
    while True:
        raw = os.urandom(32)
        if 0 < int.from_bytes(raw, "big") < t._SECP256K1_ORDER:
            return raw.hex()


def random_passphrase() -> str:
    return "pass-" + os.urandom(8).hex()


@pytest.fixture
def clean_env(monkeypatch):
    for name in (t.ENV_PRIVATE_KEY, t.ENV_KEYSTORE, t.ENV_KEYSTORE_PASSPHRASE):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _doc(path) -> dict:
    return json.loads(path.read_text())


def _write(path, doc: dict) -> None:
    path.write_text(json.dumps(doc))


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_with_default_parameters(tmp_path):
    key, pw = random_key(), random_passphrase()
    path = tmp_path / "sei.json"
    address = ks.create_keystore(path, key, pw)
    assert address == t.Signer(key, "x").address and address.startswith("sei1")
    assert ks.open_keystore(path, pw) == key
    assert ks.keystore_address(path) == address
    doc = _doc(path)
    assert set(doc) == {"version", "kdf", "n", "r", "p", "salt", "nonce", "ciphertext", "tag", "address"}
    assert (doc["version"], doc["kdf"], doc["n"], doc["r"], doc["p"]) == (1, "scrypt", 2**15, 8, 1)
    assert (len(doc["salt"]), len(doc["nonce"]), len(doc["ciphertext"]), len(doc["tag"])) == (32, 24, 64, 32)
    text = path.read_text()
    assert key not in text and pw not in text and doc["ciphertext"] != key


def test_a_prefixed_upper_case_key_is_stored_normalised(tmp_path):
    key, pw = random_key(), random_passphrase()
    path = tmp_path / "k.json"
    ks.create_keystore(path, "0x" + key.upper(), pw, n=FAST_N)
    assert ks.open_keystore(path, pw) == key


def test_two_keystores_of_one_key_differ_in_salt_nonce_and_ciphertext(tmp_path):
    key, pw = random_key(), random_passphrase()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    ks.create_keystore(a, key, pw, n=FAST_N)
    ks.create_keystore(b, key, pw, n=FAST_N)
    da, db = _doc(a), _doc(b)
    assert da["salt"] != db["salt"] and da["nonce"] != db["nonce"] and da["ciphertext"] != db["ciphertext"]


# ------------------------------------------------------------------------------------------ authentication


def test_a_wrong_passphrase_is_refused_without_echoing_anything(tmp_path):
    key, pw = random_key(), random_passphrase()
    path = tmp_path / "k.json"
    ks.create_keystore(path, key, pw, n=FAST_N)
    wrong = pw + "x"
    with pytest.raises(ks.KeystoreError, match="wrong passphrase or corrupted keystore") as e:
        ks.open_keystore(path, wrong)
    assert str(path) in str(e.value)
    assert key not in str(e.value) and wrong not in str(e.value)


@pytest.mark.parametrize("field", ["ciphertext", "tag", "nonce", "salt"])
def test_any_flipped_bit_is_detected(tmp_path, field):
    key, pw = random_key(), random_passphrase()
    path = tmp_path / "k.json"
    ks.create_keystore(path, key, pw, n=FAST_N)
    doc = _doc(path)
    raw = bytearray(bytes.fromhex(doc[field]))
    raw[len(raw) // 2] ^= 0x01
    doc[field] = raw.hex()
    _write(path, doc)
    with pytest.raises(ks.KeystoreError, match="wrong passphrase or corrupted keystore"):
        ks.open_keystore(path, pw)


def test_a_swapped_address_is_detected(tmp_path):
    pw = random_passphrase()
    mine, theirs = tmp_path / "mine.json", tmp_path / "theirs.json"
    ks.create_keystore(mine, random_key(), pw, n=FAST_N)
    other_address = ks.create_keystore(theirs, random_key(), pw, n=FAST_N)
    doc = _doc(mine)
    doc["address"] = other_address
    _write(mine, doc)
    # the clear address now lies, but nothing can be signed with the file: it no longer opens
    assert ks.keystore_address(mine) == other_address
    with pytest.raises(ks.KeystoreError, match="wrong passphrase or corrupted keystore"):
        ks.open_keystore(mine, pw)


# ------------------------------------------------------------------------------------------ writing


def test_the_file_is_written_0600_even_under_a_permissive_umask_and_no_temp_file_remains(tmp_path):
    old = os.umask(0)
    try:
        ks.create_keystore(tmp_path / "k.json", random_key(), random_passphrase(), n=FAST_N)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]


def test_an_existing_keystore_is_never_overwritten_unless_asked(tmp_path):
    path = tmp_path / "k.json"
    key, pw = random_key(), random_passphrase()
    ks.create_keystore(path, key, pw, n=FAST_N)
    before = path.read_bytes()
    new_key, new_pw = random_key(), random_passphrase()
    with pytest.raises(ks.KeystoreError, match="already exists"):
        ks.create_keystore(path, new_key, new_pw, n=FAST_N)
    assert path.read_bytes() == before and ks.open_keystore(path, pw) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]
    address = ks.create_keystore(path, new_key, new_pw, n=FAST_N, overwrite=True)
    assert ks.open_keystore(path, new_pw) == new_key and address == ks.address_of(new_key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("pw", ["", "   "])
def test_an_empty_passphrase_is_refused_and_nothing_is_written(tmp_path, pw):
    with pytest.raises(ks.KeystoreError, match="empty passphrase"):
        ks.create_keystore(tmp_path / "k.json", random_key(), pw, n=FAST_N)
    assert not (tmp_path / "k.json").exists()


@pytest.mark.parametrize("bad", ["", "zz" * 32, "11" * 31, "00" * 32])
def test_a_malformed_key_is_refused_without_echoing_it(tmp_path, bad):
    with pytest.raises(ks.KeystoreError, match="private key") as e:
        ks.create_keystore(tmp_path / "k.json", bad, random_passphrase(), n=FAST_N)
    if bad:
        assert bad not in str(e.value)
    assert not (tmp_path / "k.json").exists()


@pytest.mark.parametrize("n", [2**10, 2**14 + 1, 2**30])
def test_weak_odd_or_huge_scrypt_costs_are_refused(tmp_path, n):
    with pytest.raises(ks.KeystoreError, match="scrypt"):
        ks.create_keystore(tmp_path / "k.json", random_key(), random_passphrase(), n=n)


# ------------------------------------------------------------------------------------------ malformed files


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: "not json {", "malformed \\(not JSON\\)"),
    (lambda d: [d], "not a JSON object"),
    (lambda d: {**d, "version": 2}, "unsupported version 2"),
    (lambda d: {k: v for k, v in d.items() if k != "version"}, "unsupported version None"),
    (lambda d: {**d, "kdf": "pbkdf2"}, "unsupported kdf 'pbkdf2'"),
    (lambda d: {**d, "n": 2**10}, "scrypt n must be a power of two"),
    (lambda d: {**d, "n": 2**24}, "MiB of memory"),
    (lambda d: {**d, "r": "8"}, "must be an integer"),
    (lambda d: {**d, "nonce": "zz"}, "malformed field 'nonce'"),
    (lambda d: {**d, "ciphertext": d["ciphertext"][:-2]}, "malformed field 'ciphertext'"),
    (lambda d: {k: v for k, v in d.items() if k != "tag"}, "malformed field 'tag'"),
    (lambda d: {**d, "address": "cosmos1abc"}, "malformed field 'address'"),
])
def test_malformed_files_get_a_clear_error_naming_the_file(tmp_path, edit, message):
    path = tmp_path / "k.json"
    ks.create_keystore(path, random_key(), random_passphrase(), n=FAST_N)
    edited = edit(_doc(path))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(ks.KeystoreError, match=message) as e:
        ks.open_keystore(path, "whatever-passphrase")
    assert str(path) in str(e.value)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ks.KeystoreError, match="not found"):
        ks.open_keystore(tmp_path / "nope.json", "whatever-passphrase")


@pytest.fixture
def warnings_logged():
    """Let warnings through whatever level an earlier test configured (make_engine sets "error")."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)


def test_a_keystore_readable_by_others_opens_with_a_logged_warning(tmp_path, warnings_logged):
    key, pw = random_key(), random_passphrase()
    path = tmp_path / "k.json"
    ks.create_keystore(path, key, pw, n=FAST_N)
    assert ks.keystore_permission_warning(path) is None
    with capture_logs() as logs:
        assert ks.open_keystore(path, pw) == key
    assert not [x for x in logs if x["event"] == "keystore_permissions"]
    path.chmod(0o644)
    warning = ks.keystore_permission_warning(path)
    assert warning and "0644" in warning and f"chmod 600 {path}" in warning
    with capture_logs() as logs:
        assert ks.open_keystore(path, pw) == key
    [entry] = [x for x in logs if x["event"] == "keystore_permissions"]
    assert entry["log_level"] == "warning" and entry["warning"] == warning
    path.chmod(0o640)  # group-readable counts too
    assert ks.keystore_permission_warning(path)


# ------------------------------------------------------------------------------------------ load_private_key


def test_a_hex_key_and_a_keystore_both_set_are_refused_naming_both(tmp_path, clean_env):
    """Which key signs real orders is the operator's explicit choice: with both sources set nothing is
    opened, and the one line names both (issue 17: the environment key used to win silently)."""
    env_key, store_key, pw = random_key(), random_key(), random_passphrase()
    ks.create_keystore(tmp_path / "k.json", store_key, pw, n=FAST_N)
    clean_env.setenv(t.ENV_PRIVATE_KEY, env_key)
    clean_env.setenv(t.ENV_KEYSTORE, str(tmp_path / "k.json"))
    clean_env.setenv(t.ENV_KEYSTORE_PASSPHRASE, pw)
    asked = []
    with pytest.raises(RuntimeError) as e:
        t.load_private_key(lambda: asked.append(1) or pw)
    assert t.ENV_PRIVATE_KEY in str(e.value) and f"{t.ENV_KEYSTORE}={tmp_path / 'k.json'}" in str(e.value)
    assert env_key not in str(e.value) and store_key not in str(e.value) and asked == []
    clean_env.delenv(t.ENV_KEYSTORE)
    assert t.load_private_key(lambda: asked.append(1) or pw) == env_key and asked == []


def test_the_keystore_opens_with_the_passphrase_from_the_environment_without_prompting(tmp_path, clean_env):
    key, pw = random_key(), random_passphrase()
    ks.create_keystore(tmp_path / "k.json", key, pw, n=FAST_N)
    clean_env.setenv(t.ENV_KEYSTORE, str(tmp_path / "k.json"))
    clean_env.setenv(t.ENV_KEYSTORE_PASSPHRASE, pw)
    asked = []
    assert t.load_private_key(lambda: asked.append(1) or "not-this-one") == key
    assert asked == []


def test_without_a_passphrase_in_the_environment_the_prompt_is_asked_once(tmp_path, clean_env):
    key, pw = random_key(), random_passphrase()
    ks.create_keystore(tmp_path / "k.json", key, pw, n=FAST_N)
    clean_env.setenv(t.ENV_KEYSTORE, str(tmp_path / "k.json"))
    asked = []
    assert t.load_private_key(lambda: asked.append(1) or pw) == key
    assert asked == [1]
    clean_env.setenv(t.ENV_KEYSTORE_PASSPHRASE, "")  # set but empty counts as unset (an empty .env line)
    assert t.load_private_key(lambda: asked.append(1) or pw) == key
    assert asked == [1, 1]
    with pytest.raises(ks.KeystoreError, match="wrong passphrase"):
        t.load_private_key(lambda: pw + "typo")


def test_a_keystore_without_any_passphrase_source_is_a_clear_error(tmp_path, clean_env):
    ks.create_keystore(tmp_path / "k.json", random_key(), random_passphrase(), n=FAST_N)
    clean_env.setenv(t.ENV_KEYSTORE, str(tmp_path / "k.json"))
    with pytest.raises(RuntimeError, match=t.ENV_KEYSTORE_PASSPHRASE):
        t.load_private_key()


def test_no_key_source_names_both_variables(clean_env):
    with pytest.raises(RuntimeError) as e:
        t.load_private_key(lambda: "never-asked")
    assert t.ENV_PRIVATE_KEY in str(e.value) and t.ENV_KEYSTORE in str(e.value)


def test_a_missing_keystore_is_reported_before_the_passphrase_is_asked(tmp_path, clean_env):
    clean_env.setenv(t.ENV_KEYSTORE, str(tmp_path / "missing.json"))
    asked = []
    with pytest.raises(ks.KeystoreError, match="not found"):
        t.load_private_key(lambda: asked.append(1) or "x")
    assert asked == []


# ------------------------------------------------------------------------------------------ logs


@pytest.fixture
def log_file(tmp_path):
    """configure_logging to a file, as the daemon does (tests/test_logging.py runs it in a subprocess);
    the previous structlog configuration is restored afterwards."""
    saved = structlog.get_config()
    stream = configure_logging("debug", file=str(tmp_path / "flashmm.log"))
    yield tmp_path / "flashmm.log", stream
    structlog.configure(**saved)


def test_the_key_and_passphrase_never_reach_the_log(tmp_path, clean_env, log_file):
    path, stream = log_file
    key, pw, control = random_key(), random_passphrase(), "visible-" + os.urandom(6).hex()
    store = tmp_path / "k.json"
    ks.create_keystore(store, key, pw, n=FAST_N)
    store.chmod(0o644)  # so opening logs a warning about this very file
    clean_env.setenv(t.ENV_KEYSTORE, str(store))
    assert t.load_private_key(lambda: pw) == key
    log = get_logger("test")
    # careless code logging the secrets: the registered values are redacted wherever they appear
    log.info("careless", detail=f"key={key} passphrase={pw} then {control}", items=[key, pw])
    try:
        t.load_private_key(lambda: pw + "-wrong")
    except ks.KeystoreError as exc:
        log.error("load_failed", error=str(exc))
    stream.flush()
    text = path.read_text()
    lines = [json.loads(x) for x in text.splitlines()]
    assert {x["event"] for x in lines} >= {"keystore_permissions", "careless", "load_failed"}
    assert control in text  # the capture works: an unregistered value is written as is
    assert key not in text and pw not in text and (pw + "-wrong") not in text


# ------------------------------------------------------------------------------------------ CLI


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="flashmm")
    ks.add_cli(p.add_subparsers(dest="command", required=True))
    return p.parse_args(argv)


def test_cli_create_from_a_hidden_prompt_then_address(tmp_path, clean_env, capsys):
    key, pw = random_key(), random_passphrase()
    path = tmp_path / "k.json"
    answers = iter([key, pw, pw])
    prompts = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return next(answers)

    assert ks.run_cli(_parse(["keystore", "create", str(path), "--scrypt-n", str(FAST_N)]), prompt=prompt) == 0
    out, err = capsys.readouterr()
    assert out.strip() == ks.address_of(key) and len(prompts) == 3
    assert key not in out + err and pw not in out + err
    assert ks.open_keystore(path, pw) == key and _doc(path)["n"] == FAST_N
    assert ks.run_cli(_parse(["keystore", "address", str(path)])) == 0
    assert capsys.readouterr().out.strip() == ks.address_of(key)


def test_cli_create_reads_the_key_and_passphrase_from_the_environment(tmp_path, clean_env, capsys):
    key, pw = random_key(), random_passphrase()
    clean_env.setenv(t.ENV_PRIVATE_KEY, key)
    clean_env.setenv(t.ENV_KEYSTORE_PASSPHRASE, pw)
    path = tmp_path / "k.json"

    def no_prompt(text: str) -> str:
        raise AssertionError("prompted although the environment has both")

    assert ks.run_cli(_parse(["keystore", "create", str(path), "--scrypt-n", str(FAST_N)]), prompt=no_prompt) == 0
    assert ks.open_keystore(path, pw) == key
    # a second create refuses to overwrite; --overwrite replaces
    assert ks.run_cli(_parse(["keystore", "create", str(path), "--scrypt-n", str(FAST_N)])) == 2
    assert "already exists" in capsys.readouterr().err
    assert ks.run_cli(_parse(["keystore", "create", str(path), "--overwrite", "--scrypt-n", str(FAST_N)])) == 0


def test_cli_errors_end_in_exit_2_with_one_message(tmp_path, clean_env, capsys):
    key = random_key()
    path = tmp_path / "k.json"
    answers = iter([key, "first-passphrase", "second-passphrase"])
    assert ks.run_cli(_parse(["keystore", "create", str(path)]), prompt=lambda _: next(answers)) == 2
    assert "the two passphrases differ" in capsys.readouterr().err and not path.exists()
    answers = iter(["not-a-key", "p" * 10, "p" * 10])
    assert ks.run_cli(_parse(["keystore", "create", str(path)]), prompt=lambda _: next(answers)) == 2
    err = capsys.readouterr().err
    assert "private key" in err and "not-a-key" not in err
    assert ks.run_cli(_parse(["keystore", "address", str(tmp_path / "missing.json")])) == 2
    assert "not found" in capsys.readouterr().err

    def eof(_: str) -> str:
        raise EOFError

    assert ks.run_cli(_parse(["keystore", "create", str(path)]), prompt=eof) == 2
    assert "flashmm keystore:" in capsys.readouterr().err
