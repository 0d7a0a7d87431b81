import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certs import (
    CertError,
    new_data_key,
    new_unlock_key,
    parse_unlock_key,
    unwrap_key,
    wrap_key,
)


def test_new_data_key_is_32_random_bytes() -> None:
    assert len(new_data_key()) == 32
    assert new_data_key() != new_data_key()


def test_new_unlock_key_is_shlkey_1_and_52_base32_characters() -> None:
    key = new_unlock_key()
    assert re.fullmatch(r"SHLKEY-1-[a-z2-7]{52}", key)
    assert len(parse_unlock_key(key)) == 32


def test_unwrap_gives_back_the_wrapped_data_key() -> None:
    data_key, unlock_key = new_data_key(), new_unlock_key()
    blob = wrap_key(data_key, unlock_key)
    assert unwrap_key(blob, unlock_key) == data_key
    assert unwrap_key(blob, f"  {unlock_key}\n") == data_key


def test_wrapping_twice_gives_different_blobs() -> None:
    data_key, unlock_key = new_data_key(), new_unlock_key()
    assert wrap_key(data_key, unlock_key) != wrap_key(data_key, unlock_key)


def test_unwrap_with_another_unlock_key_says_the_key_is_wrong() -> None:
    blob = wrap_key(new_data_key(), new_unlock_key())
    with pytest.raises(CertError, match="unlock key is wrong"):
        unwrap_key(blob, new_unlock_key())


def test_unwrap_of_a_damaged_ciphertext_says_the_blob_is_corrupt() -> None:
    unlock_key = new_unlock_key()
    blob = bytearray(wrap_key(new_data_key(), unlock_key))
    blob[-1] ^= 0x01
    with pytest.raises(CertError, match="wrapped key is corrupt"):
        unwrap_key(bytes(blob), unlock_key)


def test_unwrap_of_a_truncated_blob_says_it_is_corrupt() -> None:
    unlock_key = new_unlock_key()
    with pytest.raises(CertError, match="wrapped key is corrupt"):
        unwrap_key(wrap_key(new_data_key(), unlock_key)[:40], unlock_key)


def test_unwrap_refuses_an_unknown_format_version() -> None:
    unlock_key = new_unlock_key()
    blob = wrap_key(new_data_key(), unlock_key)
    with pytest.raises(CertError, match="format version 9"):
        unwrap_key(b"\x09" + blob[1:], unlock_key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with 'SHLKEY-1-'"),
        ("SHLKEY-2-" + "a" * 52, "must start with 'SHLKEY-1-'"),
        ("SHLKEY-1-" + "a" * 51, "52 characters.*got 51"),
        ("SHLKEY-1-" + "a" * 51 + "1", "a-z and 2-7"),
    ],
)
def test_parse_unlock_key_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CertError, match=message):
        parse_unlock_key(text)


@given(st.binary(max_size=120))
def test_unwrap_raises_only_cert_error_for_arbitrary_bytes(blob: bytes) -> None:
    with pytest.raises(CertError):
        unwrap_key(blob, "SHLKEY-1-" + "a" * 52)
