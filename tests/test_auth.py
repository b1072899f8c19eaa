"""chat.auth: the claims PROTOCOL section 2 requires (integer exp, a sane sub) and the identity's exp."""

import time

import jwt
import pytest

from chat.auth import CLOCK_SKEW_S, MAX_EXP, MAX_SUB_CHARS, AuthError, issue_token, verify_token

SECRET = "test-secret-0123456789abcdef0123456789"
LATER = int(time.time()) + 3600


def _token(**claims) -> str:
    return jwt.encode({"sub": "u-1", "role": "customer", "exp": LATER, **claims}, SECRET, algorithm="HS256")


def test_the_identity_carries_the_tokens_integer_exp():
    identity = verify_token(SECRET, issue_token(SECRET, "u-1", "customer", ttl_s=60))
    assert identity.user_id == "u-1" and type(identity.exp) is int
    assert 0 < identity.exp - time.time() <= 60


@pytest.mark.parametrize("exp", [LATER + 0.5, float(LATER), str(LATER), True],
                         ids=["float", "whole-float", "str", "bool"])
def test_an_exp_that_is_not_an_integer_is_refused(exp):
    with pytest.raises(AuthError, match="exp"):  # True is 1: long expired
        verify_token(SECRET, _token(exp=exp))


@pytest.mark.parametrize("aud", ["chat", ["chat"], [], "", None], ids=["str", "list", "empty-list", "empty", "null"])
def test_a_token_with_an_audience_is_refused_an_empty_one_too(aud):
    with pytest.raises(AuthError, match="audience"):
        verify_token(SECRET, _token(aud=aud))


def test_an_exp_beyond_what_json_readers_hold_exactly_is_refused():
    assert verify_token(SECRET, _token(exp=MAX_EXP)).exp == MAX_EXP
    for exp in (MAX_EXP + 1, 2**64):  # 2**64 once broke the reply that carries it (orjson: 64 bits at most)
        with pytest.raises(AuthError, match="exp must be an integer"):
            verify_token(SECRET, _token(exp=exp))


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_iat_and_nbf_allow_for_an_issuer_clock_a_little_ahead(claim):
    """A token minted by a backend whose clock runs a few seconds ahead is good; one from far ahead is not."""
    now = time.time()
    assert verify_token(SECRET, _token(**{claim: int(now) + 2})).user_id == "u-1"
    assert verify_token(SECRET, _token(**{claim: now - 10.5})).user_id == "u-1"
    with pytest.raises(AuthError, match=f"{claim} is in the future"):
        verify_token(SECRET, _token(**{claim: int(now) + CLOCK_SKEW_S + 30}))
    for bad in ("yesterday", True, [1]):
        with pytest.raises(AuthError, match=f"{claim} must be a number"):
            verify_token(SECRET, _token(**{claim: bad}))


@pytest.mark.parametrize("sub", ["", "x" * (MAX_SUB_CHARS + 1), "a\nb", "nul\x00", "del\x7f", "c1\x85", 7, None],
                         ids=["empty", "too-long", "newline", "nul", "del", "c1-control", "int", "null"])
def test_a_bad_sub_is_refused(sub):
    with pytest.raises(AuthError, match="(?i)sub"):
        verify_token(SECRET, _token(sub=sub))


@pytest.mark.parametrize("teams", ["", 0, False, {}, None, "sales", [1], {"a": 1}])
def test_teams_of_another_type_than_a_list_of_strings_are_refused(teams):
    with pytest.raises(AuthError, match="teams"):
        verify_token(SECRET, _token(teams=teams))


def test_teams_absent_or_a_list_of_strings_are_accepted():
    assert verify_token(SECRET, _token()).teams == ()
    assert verify_token(SECRET, _token(teams=[])).teams == ()
    assert verify_token(SECRET, _token(teams=["sales", "vip"])).teams == ("sales", "vip")


def test_a_sub_of_64_characters_any_script_is_accepted():
    sub = "客服" * (MAX_SUB_CHARS // 2)
    assert verify_token(SECRET, _token(sub=sub)).user_id == sub


@pytest.mark.parametrize("token", [
    _token()[:-3] + "abc",  # bad signature
    _token()[:40],  # truncated
    _token(exp=1),  # expired
    _token(role="root"),
])
def test_the_error_never_repeats_the_token(token):
    with pytest.raises(AuthError) as err:
        verify_token(SECRET, token)
    assert token not in str(err.value)
    assert not any(part in str(err.value) for part in token.split(".") if len(part) > 8)


# --- secret rotation: the current key signs, the previous ones still verify -------------------------

PREVIOUS = "previous-secret-0123456789abcdef0123"
UNKNOWN = "unknown-secret-0123456789abcdef012345"


def _signed(key: str, algorithm: str = "HS256", **claims) -> str:
    return jwt.encode({"sub": "u-1", "role": "customer", "exp": LATER, **claims}, key, algorithm=algorithm)


def test_a_token_signed_with_a_previous_key_is_accepted():
    assert verify_token((SECRET, PREVIOUS), _signed(PREVIOUS)).user_id == "u-1"
    assert verify_token((SECRET, PREVIOUS), _signed(SECRET)).user_id == "u-1"


def test_a_token_signed_with_an_unknown_key_is_refused():
    with pytest.raises(AuthError, match="Signature verification failed"):
        verify_token((SECRET, PREVIOUS), _signed(UNKNOWN))


def test_an_expired_token_of_a_previous_key_is_still_expired():
    with pytest.raises(AuthError, match="expired"):
        verify_token((SECRET, PREVIOUS), _signed(PREVIOUS, exp=1))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("key", [SECRET, PREVIOUS])
def test_alg_none_and_other_algorithms_are_refused_whatever_the_key(key):
    unsigned = jwt.encode({"sub": "u-1", "role": "customer", "exp": LATER}, None, algorithm="none")
    for token in (unsigned, _signed(key, "HS512"), _signed(key, "HS384")):
        with pytest.raises(AuthError, match="alg value is not allowed"):
            verify_token((SECRET, PREVIOUS), token)


def test_verification_needs_a_key():
    for keys in ((), ("",), (SECRET, "")):
        with pytest.raises(ValueError, match="key"):
            verify_token(keys, _signed(SECRET))


def test_issued_tokens_carry_a_random_jti_and_iat():
    first, second = (jwt.decode(issue_token(SECRET, "u-1", "customer", ttl_s=60), SECRET, algorithms=["HS256"])
                     for _ in range(2))
    assert len(first["jti"]) == 32 and first["jti"] != second["jti"]
    assert type(first["iat"]) is int and first["exp"] - first["iat"] == 60
