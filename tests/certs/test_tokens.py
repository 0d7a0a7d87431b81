import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certs import JoinToken, TokenError

DIGEST = "0123456789abcdef" * 4
SECRET = "abcdefghijklmnopqrstuvwxyz234567"
VALID = f"SHOAL-1-{DIGEST}-{SECRET}"


def test_str_then_parse_gives_the_same_token() -> None:
    token = JoinToken.new(DIGEST)
    assert JoinToken.parse(str(token)) == token
    assert str(token).startswith(f"SHOAL-1-{DIGEST}-")


def test_new_token_has_a_32_character_base32_secret() -> None:
    token = JoinToken.new(DIGEST)
    assert len(token.secret) == 32
    assert set(token.secret) <= set(string.ascii_lowercase + "234567")
    assert JoinToken.new(DIGEST).secret != token.secret


def test_new_token_is_reproducible_from_a_seeded_rng() -> None:
    assert JoinToken.new(DIGEST, random.Random(1)) == JoinToken.new(DIGEST, random.Random(1))


def test_parse_strips_surrounding_whitespace() -> None:
    assert JoinToken.parse(f"  {VALID}\n") == JoinToken(DIGEST, SECRET)


def test_repr_does_not_reveal_the_secret() -> None:
    assert SECRET not in repr(JoinToken(DIGEST, SECRET))


def test_the_constructor_validates_its_parts() -> None:
    with pytest.raises(TokenError, match="CA digest"):
        JoinToken("abc", SECRET)
    with pytest.raises(TokenError, match="secret"):
        JoinToken(DIGEST, "short")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "join token is empty"),
        ("   ", "join token is empty"),
        (f"SWMTKN-1-{DIGEST}-{SECRET}", "must start with 'SHOAL-'"),
        (f"shoal-1-{DIGEST}-{SECRET}", "must start with 'SHOAL-'"),
        ("SHOAL", "no version"),
        (f"SHOAL--{DIGEST}-{SECRET}", "no version"),
        (f"SHOAL-2-{DIGEST}-{SECRET}", "version 2 is not supported"),
        (f"SHOAL-x-{DIGEST}-{SECRET}", "version \\? is not supported"),
        (f"SHOAL-1-{DIGEST}", "has 3 dash-separated parts, expected 4"),
        (f"SHOAL-1-{DIGEST}-{SECRET}-extra", "has 5 dash-separated parts, expected 4"),
        (f"SHOAL-1-{DIGEST[:-1]}-{SECRET}", "CA digest must be 64 lowercase hex.*got 63"),
        (f"SHOAL-1-{DIGEST.upper()}-{SECRET}", "CA digest must be 64 lowercase hex"),
        (f"SHOAL-1-{DIGEST}-{SECRET[:-1]}", "secret must be 32 characters, got 31"),
        (f"SHOAL-1-{DIGEST}-{SECRET[:-1]}1", "secret may only contain a-z and 2-7.*'1'"),
        (f"SHOAL-1-{DIGEST}-{SECRET[:-1]}é", "non-ASCII"),
    ],
)
def test_parse_says_exactly_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        JoinToken.parse(text)


def test_parse_errors_end_with_how_to_get_a_token() -> None:
    with pytest.raises(TokenError, match="shoal swarm join-token worker"):
        JoinToken.parse("nonsense")


def test_parse_errors_never_repeat_the_secret() -> None:
    with pytest.raises(TokenError) as caught:
        JoinToken.parse(f"SHOAL-1-{DIGEST[:-1]}-{SECRET}")
    assert SECRET not in str(caught.value)


def test_matches_is_true_only_when_both_parts_are_equal() -> None:
    token = JoinToken(DIGEST, SECRET)
    assert token.matches(JoinToken.parse(VALID))
    assert not token.matches(JoinToken(DIGEST, "a" * 32))
    assert not token.matches(JoinToken("f" * 64, SECRET))


def parse_or_token_error(text: str) -> None:
    try:
        JoinToken.parse(text)
    except TokenError:
        pass


@given(st.text())
def test_parse_raises_only_token_error_for_any_text(text: str) -> None:
    parse_or_token_error(text)


token_like = st.lists(
    st.sampled_from(["SHOAL", "1", "2", "-", DIGEST, SECRET, *"0af-z27 \n"]), max_size=12
).map("".join)


@given(token_like)
def test_parse_raises_only_token_error_for_text_made_of_token_pieces(text: str) -> None:
    parse_or_token_error(text)


@given(st.text(alphabet=string.ascii_lowercase + string.digits + "-SHOAL", max_size=120))
def test_parse_raises_only_token_error_for_text_from_the_token_alphabet(text: str) -> None:
    parse_or_token_error(text)
