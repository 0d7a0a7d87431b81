import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from certs import (
    ClusterCA,
    Role,
    SealError,
    load_cert,
    make_csr,
    new_node_id,
    new_private_key,
    seal,
    unseal,
)

NODE_KEY = new_private_key()
CONTEXT = b"secret:db-password/node:abc123"


def test_unseal_opens_what_seal_sealed_to_the_public_key() -> None:
    blob = seal(NODE_KEY.public_key(), b"hunter2", context=CONTEXT)
    assert unseal(NODE_KEY, blob, context=CONTEXT) == b"hunter2"


def test_seal_to_a_node_certificate_opens_with_the_node_key() -> None:
    ca = ClusterCA.create("cluster1")
    cert = load_cert(ca.issue(make_csr(NODE_KEY), node_id=new_node_id(), role=Role.WORKER))
    assert unseal(NODE_KEY, seal(cert, b"token")) == b"token"


def test_blob_is_version_point_nonce_ciphertext_and_tag() -> None:
    blob = seal(NODE_KEY.public_key(), b"12345")
    assert blob[0] == 1
    assert blob[1] == 0x04
    assert len(blob) == 1 + 65 + 12 + 5 + 16


def test_sealing_the_same_plaintext_twice_gives_different_blobs() -> None:
    public = NODE_KEY.public_key()
    assert seal(public, b"same") != seal(public, b"same")


def test_empty_plaintext_round_trips() -> None:
    assert unseal(NODE_KEY, seal(NODE_KEY.public_key(), b"")) == b""


def test_another_key_cannot_unseal() -> None:
    blob = seal(NODE_KEY.public_key(), b"hunter2")
    with pytest.raises(SealError, match="another key"):
        unseal(new_private_key(), blob)


def test_a_wrong_context_cannot_unseal() -> None:
    blob = seal(NODE_KEY.public_key(), b"hunter2", context=CONTEXT)
    with pytest.raises(SealError):
        unseal(NODE_KEY, blob, context=b"secret:other/node:abc123")
    with pytest.raises(SealError):
        unseal(NODE_KEY, blob)


def test_every_single_byte_change_is_detected() -> None:
    blob = seal(NODE_KEY.public_key(), b"hunter2", context=CONTEXT)
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(SealError):
            unseal(NODE_KEY, bytes(tampered), context=CONTEXT)


def test_the_ephemeral_point_cannot_be_swapped_for_its_negation() -> None:
    blob = seal(NODE_KEY.public_key(), b"hunter2")
    x = int.from_bytes(blob[2:34], "big")
    y = int.from_bytes(blob[34:66], "big")
    p256_prime = 2**256 - 2**224 + 2**192 + 2**96 - 1
    negated = ec.EllipticCurvePublicNumbers(x, p256_prime - y, ec.SECP256R1())
    assert negated.public_key()  # still a valid point, with the same ECDH shared secret
    swapped = blob[:34] + (p256_prime - y).to_bytes(32, "big") + blob[66:]
    with pytest.raises(SealError):
        unseal(NODE_KEY, swapped)


def test_a_newer_format_version_is_refused_with_a_hint() -> None:
    blob = seal(NODE_KEY.public_key(), b"hunter2")
    with pytest.raises(SealError, match=r"version 2.*upgrade"):
        unseal(NODE_KEY, b"\x02" + blob[1:])


def test_sealing_to_a_non_p256_key_is_refused() -> None:
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(SealError, match="P-256"):
        seal(rsa_public, b"x")  # type: ignore[arg-type]


def test_unsealing_with_a_key_on_another_curve_gives_seal_error() -> None:
    blob = seal(NODE_KEY.public_key(), b"hunter2")
    with pytest.raises(SealError):
        unseal(ec.generate_private_key(ec.SECP384R1()), blob)


@given(st.binary(max_size=200))
def test_unseal_raises_only_seal_error_for_arbitrary_bytes(blob: bytes) -> None:
    with pytest.raises(SealError):
        unseal(NODE_KEY, blob)


@given(st.integers(min_value=0, max_value=1 + 65 + 12 + 7 + 16 - 1))
def test_every_truncation_gives_seal_error(length: int) -> None:
    blob = seal(NODE_KEY.public_key(), b"hunter2")
    with pytest.raises(SealError):
        unseal(NODE_KEY, blob[:length])


@given(st.binary(min_size=1 + 65 + 12 + 16, max_size=200))
def test_well_framed_garbage_gives_seal_error(tail: bytes) -> None:
    blob = seal(NODE_KEY.public_key(), b"hunter2")
    with pytest.raises(SealError):
        unseal(NODE_KEY, blob[:1] + tail[1:])
