import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.mirror.redact import Redactor, luhn_valid

ALL = Redactor.from_names(["secrets", "email", "phone", "card", "re:ACME-[0-9]{4}"])
SECRETS = Redactor.from_names(["secrets"])
EMAIL = Redactor.from_names(["email"])
PHONE = Redactor.from_names(["phone"])
CARD = Redactor.from_names(["card"])

PROPERTY = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize(
    "secret",
    [
        "sk-ant-api03-" + "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY" * 3,
        "sk-proj-" + "Xy12Zw34Ab56Cd78Ef90Gh12Ij34Kl56Mn78",
        "sk-" + "T3BlbkFJ" * 6,
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "ghp_" + "aB1" * 12,
        "gho_" + "Zz9" * 12,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-" + "1234567890-abcdef",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "rk_live_51H8abcdEFGHijklMNOP",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM\n"
        "-----END RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA",
    ],
)
def test_secret_shapes_are_redacted(secret: str) -> None:
    assert SECRETS.text(f"config: {secret} (do not share)") == (
        "config: [REDACTED:secret] (do not share)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc123def456ghi789jkl",
         "Authorization: Bearer [REDACTED:secret]"),
        ("api_key=abcdef123456&user=1", "api_key=[REDACTED:secret]&user=1"),
        ("DB_PASSWORD='s3cr3t value!'", "DB_PASSWORD='[REDACTED:secret]'"),
        ('{"password": "correct horse battery staple"}', '{"password": "[REDACTED:secret]"}'),
        ("password: hunter2", "password: [REDACTED:secret]"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
         "AWS_SECRET_ACCESS_KEY=[REDACTED:secret]"),
        ("postgres://app:p4ssw0rd@db.internal:5432/x", "postgres://app:[REDACTED:secret]@db.internal:5432/x"),
    ],
)
def test_credentials_are_redacted_but_their_names_kept(text: str, expected: str) -> None:
    assert SECRETS.text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Use the task-manager to schedule a risk-based review.",
        "sk alone, sk-learn, ask-me-anything, desk-lamp-for-the-office",
        "def connect(password: str, api_key: str) -> None:",
        "client = OpenAI(api_key=api_key, timeout=30)",
        "The bearer instruments were redeemed. Bearer bonds pay the holder.",
        "AKIA is a prefix; MAKIAIOSFODNN7EXAMPLEX is not a key id.",
        "Set max_tokens=4096 and token budget to 100.",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "eyJ alone and eyJ.x.y are not tokens",
    ],
)
def test_ordinary_prose_and_code_are_not_secrets(text: str) -> None:
    assert SECRETS.text(text) == text


def test_email_addresses() -> None:
    assert EMAIL.text("write to john.doe+news@mail.example.co.uk today") == (
        "write to [REDACTED:email] today"
    )
    assert EMAIL.text("<A_B%c@Example.ORG>") == "<[REDACTED:email]>"
    for text in ("user@localhost", "@mention me", "npm i pkg@latest", "icon@2x.png",
                 "pkg@1.2.3", "a @ b.com"):
        assert EMAIL.text(text) == text


@pytest.mark.parametrize(
    "number",
    ["(555) 123-4567", "555-123-4567", "555.123.4567", "1-800-555-1234", "+1 555 123 4567",
     "+44 20 7946 0958", "+44 (0)20 7946 0958", "+33 1 23 45 67 89", "+4915112345678",
     "020 7946 0958", "07700 900123"],
)
def test_phone_numbers_are_redacted(number: str) -> None:
    assert PHONE.text(f"call {number}, thanks") == "call [REDACTED:phone], thanks"


@pytest.mark.parametrize(
    "text",
    ["In 2024 we sold 1,234,567 units at $19.99.", "version 1.2.3 and 10.0.19045.2965",
     "timestamp 1700000000 and id 5551234567", "order 12345-67890", "score 3.14159265",
     "192.168.100.200", "ISBN 978-3-16-148410-0", "+1 and +2 are numbers", "2024-01-15"],
)
def test_ordinary_numbers_are_not_phones(text: str) -> None:
    assert PHONE.text(text) == text


def test_phone_keeps_the_prose_closing_parenthesis() -> None:
    assert PHONE.text("(call +1 555 123 4567)") == "(call [REDACTED:phone])"


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("79927398710")


@pytest.mark.parametrize(
    "card",
    ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "3782 822463 10005",
     "5555555555554444", "6011000990139424", "4222222222222"],
)
def test_cards_are_redacted(card: str) -> None:
    assert CARD.text(f"paid with {card}.") == "paid with [REDACTED:card]."


@pytest.mark.parametrize(
    "text",
    ["order 4111111111111112 shipped", "ts 1700000000000 ms", "1234567890123452",
     "digits 41111111111111111111 are too many", "hash a4111111111111111f",
     "555-123-4567 1234 5678 9013", "pi is 3.4111111111111111"],
)
def test_numbers_failing_luhn_or_shape_are_not_cards(text: str) -> None:
    assert CARD.text(text) == text


def test_card_among_other_numbers_is_found() -> None:
    assert CARD.text("ref 12-4111-1111-1111-1111") == "ref 12-[REDACTED:card]"
    assert CARD.text("4111 1111 1111 1111 5555 5555 5555 4444") == (
        "[REDACTED:card] [REDACTED:card]"
    )


def test_custom_pattern() -> None:
    redactor = Redactor.from_names(["re:(?i)project-[a-z]+"])
    assert redactor.text("see Project-Zeus and project-apollo") == "see [REDACTED] and [REDACTED]"
    # A pattern that would match inside a token, or match nothing at all, is harmless.
    greedy = Redactor.from_names(["re:RED|x*"])
    once = greedy.text("RED alert")
    assert once == "[REDACTED] alert"
    assert greedy.text(once) == once


def test_no_rules_is_falsy_and_changes_nothing() -> None:
    empty = Redactor.from_names([])
    assert not empty
    assert ALL
    body = {"password": "hunter2", "text": "a@b.com"}
    assert empty.json(body) == body
    assert empty.text("a@b.com") == "a@b.com"


def test_unknown_redactor_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown redactor 'ssn'"):
        Redactor.from_names(["ssn"])


def test_json_walk_keeps_structure_and_keys() -> None:
    request = {
        "model": "gpt-4o",
        "max_tokens": 100,
        "stream": True,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "mail me at a@b.com"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"function": {"name": "login",
                              "arguments": '{"user": "x", "password": "pw123456"}'}}]},
        ],
        "metadata": {"api_key": "plain-words-no-shape", "user@example.com": 1.5},
    }
    redacted = ALL.json(request)
    assert redacted == {
        "model": "gpt-4o",
        "max_tokens": 100,
        "stream": True,
        "messages": [
            {"role": "user",
             "content": [{"type": "text", "text": "mail me at [REDACTED:email]"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"function": {"name": "login",
                              "arguments": '{"user": "x", "password": "[REDACTED:secret]"}'}}]},
        ],
        # A credential-named key's value goes whole; keys themselves are kept.
        "metadata": {"api_key": "[REDACTED:secret]", "user@example.com": 1.5},
    }
    assert request["messages"][0]["content"][0]["text"] == "mail me at a@b.com"  # type: ignore[index]


def test_json_walk_survives_deep_nesting() -> None:
    nested: object = "a@b.com"
    for _ in range(5000):
        nested = [nested]
    redacted = EMAIL.json(nested)
    for _ in range(5000):
        assert isinstance(redacted, list)
        redacted = redacted[0]
    assert redacted == "[REDACTED:email]"


def test_large_text_is_redacted_whole() -> None:
    filler = "lorem ipsum 12 dolor, sit amet; " * 40_000  # about 1.3 MB
    text = filler + "key sk-ant-api03-abcdefABCDEF0123456789xyz end " + filler
    redacted = ALL.text(text)
    assert "sk-ant" not in redacted
    assert len(redacted) == len(text) - len("sk-ant-api03-abcdefABCDEF0123456789xyz") + len(
        "[REDACTED:secret]"
    )


# ------------------------------------------------------------------------ properties

FRAGMENTS = st.sampled_from([
    " ", "-", ".", "@", "+", "(", ")", ":", "=", '"', "'", "\n", "_", "/", "1", "4111",
    "555", "0", "a", "Z", "x.com", "sk-", "ant-", "AKIA", "eyJ", "Bearer ", "password",
    "api_key", "://", "[REDACTED", "[REDACTED:email]", "]", "ACME-", "-----BEGIN PRIVATE KEY-----",
    "4111 1111 1111 1111", "+44 20 ", "7946 0958", "j@x.io", "abcdef0123456789",
])
TRICKY_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(FRAGMENTS, max_size=40).map("".join),
)


@PROPERTY
@given(TRICKY_TEXT)
def test_redaction_is_idempotent_and_never_raises(text: str) -> None:
    once = ALL.text(text)
    assert ALL.text(once) == once


def _with_check_digit(body: str) -> str:
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("23456")) + draw(
        st.text(string.digits, min_size=length - 2, max_size=length - 2)
    )
    number = _with_check_digit(body)
    layouts = {16: (4, 4, 4, 4), 15: (4, 6, 5), 19: (4, 4, 4, 4, 3)}
    separator = draw(st.sampled_from(["", " ", "-"]))
    if separator and length in layouts:
        groups, start = [], 0
        for size in layouts[length]:
            groups.append(number[start : start + size])
            start += size
        return separator.join(groups)
    return number


KEY_CHARS = string.ascii_letters + string.digits
emails = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.text(KEY_CHARS + "._+-", min_size=1, max_size=20).filter(lambda s: s[0] in KEY_CHARS),
    st.text(string.ascii_lowercase, min_size=1, max_size=10),
    st.text(string.ascii_lowercase, min_size=2, max_size=6),
)
api_keys = st.one_of(
    st.text(KEY_CHARS + "_-", min_size=30, max_size=90).map(lambda s: f"sk-ant-api03-{s}9"),
    st.text(KEY_CHARS + "_-", min_size=30, max_size=90).map(lambda s: f"sk-proj-{s}7"),
    st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16).map(
        lambda s: f"AKIA{s}"),
    st.text(KEY_CHARS, min_size=36, max_size=40).map(lambda s: f"ghp_{s}"),
    st.text(KEY_CHARS, min_size=24, max_size=40).map(lambda s: f"sk_live_{s}"),
    st.text(KEY_CHARS + "_-", min_size=35, max_size=35).map(lambda s: f"AIza{s}"),
)
words = st.text(string.ascii_letters + ",.!?;'\"()", min_size=1, max_size=12)
prose = st.lists(words, max_size=30)


@PROPERTY
@given(prose, st.one_of(api_keys, emails, cards()), st.data())
def test_embedded_secret_email_or_card_never_survives(
    words_before: list[str], sensitive: str, data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(words_before)))
    text = " ".join([*words_before[:position], sensitive, *words_before[position:]])
    assert sensitive not in ALL.text(text)
