"""No configured secret leaves the process through the cockpit's texts: a proxy URL's user and password
(KUCOIN_REST_URL=https://user:pass@proxy) never reach a Telegram card."""

from __future__ import annotations

from tests.runtime.conftest import Rig

PROXY = "https://trader:pr0xyPASSw0rd@proxy.example.com:3128"


async def test_arm_card_names_the_account_without_the_proxy_password(rig: Rig) -> None:
    """The /arm confirmation card said "account: KuCoin futures (https://trader:<password>@proxy...:3128)" in the
    chat: the REST URL as configured, credentials and all."""
    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl

    settings = Settings(_env_file=None, kucoin_rest_url=PROXY)  # type: ignore[call-arg]
    control = EngineControl(rig.engine, settings)
    info = await control.arm_info()
    assert info.startswith("account: KuCoin futures (https://proxy.example.com:3128); symbols: "), info
    shown = info + str(await control.status()) + str(await control.config_view())
    assert "pr0xyPASSw0rd" not in shown and "trader" not in shown, shown
