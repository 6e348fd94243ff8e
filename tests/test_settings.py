"""Settings: names, precedence (flag > file > environment) and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowproxy.settings import SettingsError, load_settings, split_redactors


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("SHADOWPROXY_") or key == "ANTHROPIC_API_KEY":
            monkeypatch.delenv(key)


def test_defaults_match_the_product_contract() -> None:
    s = load_settings()
    assert (s.host, s.port, s.admin_host, s.admin_port) == ("127.0.0.1", 8080, "127.0.0.1", 9090)
    assert s.shadow_model == "claude-haiku-4-5" and s.shadow_provider == "anthropic"
    assert (s.shadow_concurrency, s.shadow_queue, s.shadow_timeout_s) == (32, 1000, 120)
    assert s.tag_header == "x-shadow-tag" and s.redactors == ["secrets"]
    assert (s.retention_days, s.max_body_mb, s.shadow_default_max_tokens, s.grace_s) == (
        30, 32, 4096, 30)
    assert s.sample_rate == 1.0 and s.database_url is None and s.primary_url is None


def test_flag_beats_file_beats_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOWPROXY_PORT", "1111")
    monkeypatch.setenv("SHADOWPROXY_SAMPLE_RATE", "0.1")
    monkeypatch.setenv("SHADOWPROXY_GRACE_S", "5")
    config = tmp_path / "shadowproxy.toml"
    config.write_text('port = 2222\nsample_rate = 0.5\nprimary_url = "https://api.openai.com/"\n')
    s = load_settings(config, {"port": 3333})
    assert s.port == 3333  # flag
    assert s.sample_rate == 0.5  # file over env
    assert s.grace_s == 5  # env when nobody else says
    assert s.primary_url == "https://api.openai.com"


def test_shadow_key_falls_back_to_anthropic_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fallback")
    s = load_settings()
    assert s.shadow_api_key is not None
    assert s.shadow_api_key.get_secret_value() == "sk-ant-fallback"
    monkeypatch.setenv("SHADOWPROXY_SHADOW_API_KEY", "sk-ant-own")
    assert load_settings().shadow_api_key.get_secret_value() == "sk-ant-own"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHADOWPROXY_PORT": "abc"}, "SHADOWPROXY_PORT: Input should be a valid integer"),
        ({"SHADOWPROXY_PRIMARY_URL": "api.openai.com"}, "SHADOWPROXY_PRIMARY_URL: must be"),
        ({"SHADOWPROXY_SAMPLE_RATE": "1.5"}, "SHADOWPROXY_SAMPLE_RATE: Input should be less"),
        ({"SHADOWPROXY_SHADOW_PROVIDER": "azure"}, "SHADOWPROXY_SHADOW_PROVIDER"),
        ({"SHADOWPROXY_DATABASE_URL": "mysql://x"}, "SHADOWPROXY_DATABASE_URL: must be"),
        ({"SHADOWPROXY_REDACT": "re:(unclosed"}, "SHADOWPROXY_REDACT: pattern"),
        ({"SHADOWPROXY_TAG_HEADER": "bad header"}, "SHADOWPROXY_TAG_HEADER"),
    ],
)
def test_bad_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_secret_values_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWPROXY_DATABASE_URL", "mysql://user:hunter2@db/x")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "hunter2" not in str(err.value)


def test_config_file_problems(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="file not found"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'prot'"):
        load_settings(unknown)


def test_redactor_lists_keep_commas_inside_patterns() -> None:
    assert split_redactors("secrets, email,re:a{1,3},phone") == ["secrets", "email", "re:a{1,3}",
                                                                  "phone"]


def test_a_misspelt_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWPROXY_SAMPLE_RTAE", "0.5")
    with pytest.raises(SettingsError, match="SHADOWPROXY_SAMPLE_RTAE: unknown setting"):
        load_settings()
