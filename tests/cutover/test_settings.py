"""The cutover's settings: the contract's defaults, and one line naming a bad value."""

from __future__ import annotations

import pytest

from shadowproxy.settings import Settings, SettingsError, load_settings


def test_defaults_match_the_contract() -> None:
    settings = Settings()
    assert (settings.cutover_ttfb_s, settings.cutover_guard_window,
            settings.cutover_max_fallback_rate) == (10.0, 200, 0.05)
    assert settings.cutover_poll_s <= 5  # workers follow a change within 5 s


@pytest.mark.parametrize(("name", "value"), [
    ("CUTOVER_MAX_FALLBACK_RATE", "1.5"), ("CUTOVER_GUARD_WINDOW", "0"),
    ("CUTOVER_TTFB_S", "inf"), ("CUTOVER_POLL_S", "30"),
])
def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch, name: str,
                                       value: str) -> None:
    monkeypatch.setenv(f"SHADOWPROXY_{name}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(f"SHADOWPROXY_{name}: ")
