"""§9.4 pre-trade checks and the halt counters, at their exact boundaries."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from engine.config import default_strategy_config
from engine.models import Side
from engine.risk import ContractSpecError, EntryProposal, RiskState, load_contract_specs, pretrade_checks, require_spec
from engine.risk.formulas import RiskInputError, position_size, trade_pnl

CFG = default_strategy_config()
T0 = 1_766_016_000_000  # 2025-12-18 00:00 UTC
MIN = 60_000


def _failing(state: RiskState, proposal: EntryProposal, margins: dict[str, D] | None = None) -> list[str]:
    return [g.code for g in pretrade_checks(CFG, state, proposal, margins or {}) if not g.passed]


def _proposal(symbol: str = "ETHUSDTM", margin: D = D(200), lots: int = 10, now: int = T0 + MIN) -> EntryProposal:
    return EntryProposal(symbol=symbol, margin=margin, lots=lots, lot_size=1, now_ms=now)


def test_fresh_account_passes_everything() -> None:
    assert _failing(RiskState.start(D(10000), T0), _proposal()) == []


def test_position_exists_and_max_positions() -> None:
    state = RiskState.start(D(10000), T0)
    margins = {f"S{i}": D(100) for i in range(4)} | {"ETHUSDTM": D(100)}
    assert _failing(state, _proposal(), margins) == ["position_exists", "max_positions"]
    assert _failing(state, _proposal("NEWUSDTM"), {f"S{i}": D(100) for i in range(4)}) == []


def test_total_margin_boundary_is_inclusive() -> None:
    state = RiskState.start(D(10000), T0)
    assert _failing(state, _proposal(margin=D(200)), {"A": D(800)}) == []  # exactly 10 %
    assert _failing(state, _proposal(margin=D("200.01")), {"A": D(800)}) == ["max_total_margin"]


def test_daily_loss_limit_and_midnight_reset() -> None:
    state = RiskState.start(D(10000), T0)
    state.record_close("XBTUSDTM", D(-499), T0 + MIN)
    assert "daily_loss_limit" not in _failing(state, _proposal(now=T0 + 2 * MIN))
    state.record_close("XBTUSDTM", D(-1), T0 + 2 * MIN)  # exactly −5 %
    assert "daily_loss_limit" in _failing(state, _proposal(now=T0 + 3 * MIN))
    assert _failing(state, _proposal(now=T0 + 86_400_000 + MIN)) == []


def test_five_consecutive_losses_halt_until_a_win() -> None:
    state = RiskState.start(D(100000), T0)
    for i in range(5):
        state.record_close("XBTUSDTM", D(-1), T0 + i)
    assert _failing(state, _proposal(now=T0 + 40 * MIN)) == ["consecutive_losses"]
    state.record_close("XBTUSDTM", D(1), T0 + 41 * MIN)
    assert _failing(state, _proposal(now=T0 + 42 * MIN)) == []


def test_funding_read_after_a_close_corrects_the_day_the_streak_and_the_cooldown() -> None:
    """A close booked at +0.20 without its funding is really −0.30: the daily loss limit, the fifth loss of a
    streak and the loss cooldown all see it as if it had been booked so at the close; a win again undoes it."""
    state = RiskState.start(D(10000), T0)
    for i in range(4):
        state.record_close("XBTUSDTM", D(-1), T0 + i)
    state.record_close("ETHUSDTM", D("0.20"), T0 + MIN)
    assert (state.consecutive_losses, state.realized_today) == (0, D("-3.80"))
    state.correct_close("ETHUSDTM", D("0.20"), D("-0.30"), T0 + MIN, T0 + 2 * MIN)
    assert (state.consecutive_losses, state.realized_today) == (5, D("-4.30"))
    assert _failing(state, _proposal(now=T0 + 40 * MIN)) == ["consecutive_losses"]
    assert _failing(state, _proposal("SOLUSDTM", now=T0 + 40 * MIN)) == ["consecutive_losses"]
    assert state.last_loss_exit_ms["ETHUSDTM"] == T0 + MIN
    state.correct_close("ETHUSDTM", D("-0.30"), D("0.10"), T0 + MIN, T0 + 3 * MIN)
    assert (state.consecutive_losses, state.realized_today) == (0, D("-3.90"))
    state.record_close("ETHUSDTM", D(-499), T0 + 4 * MIN)
    state.correct_close("ETHUSDTM", D(-499), D("-499.5"), T0 + 4 * MIN, T0 + 5 * MIN)
    assert state.realized_today == D("-503.40") and "daily_loss_limit" in _failing(state, _proposal(now=T0 + 6 * MIN))
    yesterday = RiskState.start(D(10000), T0)
    yesterday.record_close("ETHUSDTM", D(-1), T0 + MIN)
    yesterday.correct_close("ETHUSDTM", D(-1), D(-2), T0 + MIN, T0 + 86_400_000 + MIN)  # read after midnight
    assert (yesterday.realized_today, yesterday.consecutive_losses) == (0, 0)  # today's figures are not yesterday's


def _restarted(state: RiskState, now: int) -> RiskState:
    """What a restart at ``now`` restores from the closes as corrected (the event log's closed_trades)."""
    again = RiskState.start(state.equity, now)
    again.restore([(sym, net, ts) for sym, net, ts, _ in state.recent_closes], [], now)
    return again


def _books(state: RiskState) -> tuple[int, D, dict[str, int]]:
    return state.consecutive_losses, state.realized_today, state.last_loss_exit_ms


def test_an_earlier_close_corrected_after_later_ones_refolds_the_streak_as_a_restart_would() -> None:
    """Before: the streak was corrected only when the corrected trade was the latest close. A +0.20 win read as
    −0.30 after two later losses left the streak at 2 until the next restart made it 3 (the halt at 3 waited for
    a restart); a −0.10 loss read as +0.40 left it at 3 where a restart says 2, and its cooldown stood."""
    state = RiskState.start(D(100000), T0)
    state.record_close("ETHUSDTM", D("0.20"), T0 + MIN)  # funding unread
    state.record_close("XBTUSDTM", D(-1), T0 + 2 * MIN)
    state.record_close("XBTUSDTM", D(-1), T0 + 3 * MIN)
    assert state.consecutive_losses == 2
    state.correct_close("ETHUSDTM", D("0.20"), D("-0.30"), T0 + MIN, T0 + 4 * MIN)
    assert _books(state) == (3, D("-2.30"), {"ETHUSDTM": T0 + MIN, "XBTUSDTM": T0 + 3 * MIN})
    assert _books(state) == _books(_restarted(state, T0 + 4 * MIN))
    state.record_close("SOLUSDTM", D(-2), T0 + 5 * MIN)  # the refold left each close's streak-before right too
    assert state.consecutive_losses == 4 == _restarted(state, T0 + 5 * MIN).consecutive_losses

    won = RiskState.start(D(100000), T0)
    won.record_close("ETHUSDTM", D("-0.10"), T0 + MIN)
    won.record_close("XBTUSDTM", D(-1), T0 + 2 * MIN)
    won.record_close("XBTUSDTM", D(-1), T0 + 3 * MIN)
    assert (won.consecutive_losses, won.last_loss_exit_ms["ETHUSDTM"]) == (3, T0 + MIN)
    won.correct_close("ETHUSDTM", D("-0.10"), D("0.40"), T0 + MIN, T0 + 4 * MIN)
    assert _books(won) == (2, D("-1.60"), {"XBTUSDTM": T0 + 3 * MIN})  # no ETH cooldown: it never lost
    assert _books(won) == _books(_restarted(won, T0 + 4 * MIN))
    assert _failing(won, _proposal(now=T0 + 5 * MIN)) == []


def test_a_late_correction_of_yesterdays_close_keeps_todays_streak_reset_at_midnight() -> None:
    """The refold resets at midnight as roll does: yesterday's win read as a loss adds nothing to today's
    streak when it resets daily, and does when it does not."""
    for resets, want in ((True, 1), (False, 3)):
        state = RiskState.start(D(100000), T0, consecutive_loss_resets_daily=resets)
        state.record_close("XBTUSDTM", D(-1), T0 + 86_400_000 - 2 * MIN)
        state.record_close("ETHUSDTM", D("0.20"), T0 + 86_400_000 - MIN)
        state.record_close("XBTUSDTM", D(-1), T0 + 86_400_000 + MIN)
        state.correct_close("ETHUSDTM", D("0.20"), D("-0.30"), T0 + 86_400_000 - MIN, T0 + 86_400_000 + 2 * MIN)
        assert state.consecutive_losses == want, resets
        again = RiskState.start(state.equity, T0, consecutive_loss_resets_daily=resets)
        again.restore([(s, n, t) for s, n, t, _ in state.recent_closes], [], T0 + 86_400_000 + 2 * MIN)
        assert again.consecutive_losses == want and state.realized_today == again.realized_today == D(-1)


def test_circuit_breaker_latches_until_manual_reset() -> None:
    state = RiskState.start(D(10000), T0)
    state.mark_equity(D(9001), T0 + MIN, breaker_pct=D(10))
    assert "circuit_breaker" not in _failing(state, _proposal())
    state.mark_equity(D(9000), T0 + MIN, breaker_pct=D(10))
    state.mark_equity(D(9900), T0 + 2 * MIN, breaker_pct=D(10))
    assert "circuit_breaker" in _failing(state, _proposal(now=T0 + 3 * MIN))
    state.reset_circuit_breaker()
    assert "circuit_breaker" not in _failing(state, _proposal(now=T0 + 3 * MIN))


def test_drawdown_peak_resets_at_utc_midnight() -> None:
    state = RiskState.start(D(10000), T0)
    state.mark_equity(D(9700), T0 + MIN, breaker_pct=D(10))
    assert state.drawdown_pct == D(3)
    state.mark_equity(D(9700), T0 + 86_400_000, breaker_pct=D(10))
    assert state.drawdown_pct == 0


def test_cooldowns_at_their_boundaries() -> None:
    state = RiskState.start(D(10000), T0)
    state.record_entry("ETHUSDTM", T0)
    assert _failing(state, _proposal(now=T0 + 179_999)) == ["entry_cooldown"]
    assert _failing(state, _proposal(now=T0 + 180_000)) == []
    state.record_close("ETHUSDTM", D(-5), T0 + 180_000)
    assert _failing(state, _proposal(now=T0 + 180_000 + 1_799_999)) == ["loss_cooldown"]
    assert _failing(state, _proposal(now=T0 + 180_000 + 1_800_000)) == []
    assert _failing(state, _proposal("XBTUSDTM", now=T0 + 180_001)) == []


def test_size_too_small() -> None:
    state = RiskState.start(D(10000), T0)
    assert _failing(state, _proposal(lots=0)) == ["size_too_small"]


def test_contract_specs_load_and_missing_symbol_refused(data_dir: Path) -> None:
    specs = load_contract_specs(data_dir / "contracts.json")
    eth = require_spec(specs, "ETHUSDTM")
    assert (eth.multiplier, eth.tick_size, eth.lot_size) == (D("0.01"), D("0.01"), 1)
    assert require_spec(specs, "XRPUSDTM").multiplier == D(10)
    with pytest.raises(ContractSpecError, match="refusing to trade"):
        require_spec(specs, "BNBUSDTM")
    # XRP: 10 XRP per lot; 200 USDT margin at 10x and price 2 → 1000 XRP → 100 lots, never 1000.
    size = position_size(
        CFG, equity=D(10000), abs_score=D(90), atr_pct=D("2.5"), leverage=10, ref_price=D(2), spec=specs["XRPUSDTM"]
    )
    assert size.lots == 50  # volMult 0.5 at ATR% 2.5 → 100 USDT margin → 1000 USDT notional → 500 XRP → 50 lots


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RiskInputError):
        trade_pnl(Side.LONG, entry=D(0), exit_price=D(1), quantity=D(1), leverage=5, fee_in=D(0), fee_out=D(0))
    with pytest.raises(ContractSpecError, match="not found"):
        load_contract_specs(tmp_path / "none.json")
    bad = tmp_path / "c.json"
    bad.write_text(
        '{"contracts": {"X": {"symbol": "X", "multiplier": 0, "lotSize": 1, "tickSize": 1, "maxLeverage": 5}}}'
    )
    with pytest.raises(ContractSpecError, match="must be positive"):
        load_contract_specs(bad)


# ---------------------------------------------------------------- restore after a restart

DAY0 = 20_423 * 86_400_000  # 2025-12-01 00:00 UTC


def test_restore_rebuilds_todays_loss_streak_and_cooldowns() -> None:
    from decimal import Decimal as D

    from engine.risk.limits import RiskState

    now = DAY0 + 10 * 3_600_000
    r = RiskState.start(D(9400), now)  # the exchange's equity at the restart
    closes = [
        ("XBTUSDTM", D("-50"), DAY0 - 3_600_000),  # yesterday: not today's PnL, and the streak restarts at midnight
        ("ETHUSDTM", D("-200"), DAY0 + 3_600_000),
        ("ETHUSDTM", D("-150"), DAY0 + 2 * 3_600_000),
        ("SOLUSDTM", D("-250"), DAY0 + 9 * 3_600_000),
        ("SOLUSDTM", D("-999"), now + 1),  # in the future (an old replay database): ignored
    ]
    r.restore(closes, [("SOLUSDTM", DAY0 + 8 * 3_600_000), ("XRPUSDTM", now + 5)], now)
    assert r.realized_today == D(-600) and r.consecutive_losses == 3
    assert r.start_of_day_equity == D(10000) and r.peak_equity == D(10000)
    assert r.daily_pnl_pct == D(-6) and r.drawdown_pct == D(6)  # past the 5 % daily loss limit
    assert r.last_loss_exit_ms == {
        "XBTUSDTM": DAY0 - 3_600_000,
        "ETHUSDTM": DAY0 + 7_200_000,
        "SOLUSDTM": now - 3_600_000,
    }
    assert r.last_entry_ms == {"SOLUSDTM": DAY0 + 8 * 3_600_000}


def test_restore_streak_runs_across_midnight_when_it_does_not_reset_daily() -> None:
    from decimal import Decimal as D

    from engine.risk.limits import RiskState

    now = DAY0 + 3_600_000
    r = RiskState.start(D(10000), now, consecutive_loss_resets_daily=False)
    r.restore(
        [("A", D("-1"), DAY0 - 3), ("A", D("5"), DAY0 - 2), ("A", D("-1"), DAY0 - 1), ("B", D("-2"), DAY0)], [], now
    )
    assert r.consecutive_losses == 2 and r.realized_today == D(-2)  # the win before them ended the older streak


def test_one_malformed_contract_row_spares_the_others_and_status_is_read() -> None:
    from engine.risk.contract import spec_changes, specs_from_payloads

    good = {"symbol": "ETHUSDTM", "multiplier": 0.01, "lotSize": 1, "tickSize": 0.01, "maxLeverage": 100}
    rows = [
        {**good, "status": "Paused"},
        {**good, "symbol": "XBTUSDTM", "tickSize": "abc"},  # garbage number
        {**good, "symbol": "SOLUSDTM", "multiplier": 0},  # not positive
        {"symbol": "XRPUSDTM"},  # fields missing
        "not-a-row",
        {**good, "symbol": "DOGEUSDTM"},  # not configured: not read
    ]
    specs, bad = specs_from_payloads(rows, ["ETHUSDTM", "XBTUSDTM", "SOLUSDTM", "XRPUSDTM"])
    assert list(specs) == ["ETHUSDTM"] and specs["ETHUSDTM"].status == "Paused"
    assert not specs["ETHUSDTM"].is_open
    assert sorted(bad) == ["SOLUSDTM", "XBTUSDTM", "XRPUSDTM", "row 'not-a-row'"]
    old = specs["ETHUSDTM"]
    fresh = specs_from_payloads([{**good, "tickSize": "0.1", "lotSize": 10}])[0]["ETHUSDTM"]
    assert fresh.status == "Open"  # a row without a status (recorded snapshots) is Open
    assert spec_changes(old, fresh) == ["tick size 0.01 → 0.1", "lot size 1 → 10"]
