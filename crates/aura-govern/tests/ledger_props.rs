//! Model-based property test of the memory ledger: random interleavings of reserve, settle, release and expire
//! agree exactly with a simple model, a reservation is granted exactly when it fits on every key, and
//! `spent + reserved` never exceeds a limit unless a settle reported more than was reserved.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use aura_core::{Clock, ManualClock, Timestamp};
use aura_govern::ledger::{
    Amounts, BudgetKey, Ledger, Limits, MemoryLedger, Period, ReleaseOutcome, ReservationId,
    ReserveLine, ReserveRequest, Scope, SettleOutcome,
};
use proptest::prelude::*;

const LIMITS: [i64; 3] = [100, 60, 250];

#[derive(Debug, Clone)]
enum Op {
    /// Reserve `amount` on the keys whose bit is set in `mask` (1..=7), expiring `ttl` ms from now.
    Reserve { mask: u8, amount: i64, ttl: i64 },
    /// Settle the `n`-th reservation made so far (modulo), for `actual`.
    Settle { n: usize, actual: i64 },
    /// Release the `n`-th reservation made so far.
    Release { n: usize },
    /// Move the clock and expire.
    Expire { advance: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..8, 0i64..40, 1i64..50).prop_map(|(mask, amount, ttl)| Op::Reserve { mask, amount, ttl }),
        2 => (any::<usize>(), 0i64..60).prop_map(|(n, actual)| Op::Settle { n, actual }),
        1 => any::<usize>().prop_map(|n| Op::Release { n }),
        1 => (0i64..30).prop_map(|advance| Op::Expire { advance }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Held,
    Settled,
    Released,
    Expired,
}

struct ModelHold {
    id: ReservationId,
    keys: Vec<usize>,
    amount: i64,
    expires_at: i64,
    state: State,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn memory_ledger_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(run(ops));
    }
}

async fn run(ops: Vec<Op>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
    let ledger = MemoryLedger::new(clock.clone());
    let keys: Vec<BudgetKey> = (0..3)
        .map(|i| {
            BudgetKey::new(
                "b",
                &Scope::Pool(format!("p{i}")),
                Period::Total,
                clock.now(),
            )
            .unwrap()
        })
        .collect();
    let mut spent = [0i64; 3];
    let mut reserved = [0i64; 3];
    let mut holds: Vec<ModelHold> = Vec::new();
    let mut overspent = false;

    for op in ops {
        match op {
            Op::Reserve { mask, amount, ttl } => {
                let chosen: Vec<usize> = (0..3).filter(|i| mask & (1 << i) != 0).collect();
                let fits = chosen
                    .iter()
                    .all(|&i| spent[i] + reserved[i] + amount <= LIMITS[i]);
                let request = ReserveRequest {
                    lines: chosen
                        .iter()
                        .map(|&i| ReserveLine {
                            key: keys[i].clone(),
                            limits: Limits {
                                cost_micros: Some(LIMITS[i]),
                                ..Limits::default()
                            },
                        })
                        .collect(),
                    amounts: cost(amount),
                    expires_at: Timestamp::from_millis(clock.now().as_millis() + ttl),
                };
                let result = ledger.reserve(&request).await;
                assert_eq!(result.is_ok(), fits, "granted iff it fits: {result:?}");
                if let Ok(reservation) = result {
                    for (line, &i) in reservation.keys.iter().zip(&chosen) {
                        assert_eq!(line.before.reserved.cost_micros, reserved[i]);
                        assert_eq!(line.after.reserved.cost_micros, reserved[i] + amount);
                        reserved[i] += amount;
                    }
                    holds.push(ModelHold {
                        id: reservation.id,
                        keys: chosen,
                        amount,
                        expires_at: request.expires_at.as_millis(),
                        state: State::Held,
                    });
                }
            }
            Op::Settle { n, actual } => {
                if holds.is_empty() {
                    continue;
                }
                let len = holds.len();
                let hold = &mut holds[n % len];
                let outcome = ledger.settle(hold.id, cost(actual)).await.unwrap();
                let expected = match hold.state {
                    State::Held => SettleOutcome::Settled,
                    State::Expired => SettleOutcome::SettledAfterExpiry,
                    State::Settled => SettleOutcome::AlreadySettled,
                    State::Released => SettleOutcome::AlreadyReleased,
                };
                assert_eq!(outcome, expected);
                if matches!(hold.state, State::Held | State::Expired) {
                    for &i in &hold.keys {
                        if hold.state == State::Held {
                            reserved[i] -= hold.amount;
                        }
                        spent[i] += actual;
                    }
                    overspent |= actual > hold.amount || hold.state == State::Expired;
                    hold.state = State::Settled;
                }
            }
            Op::Release { n } => {
                if holds.is_empty() {
                    continue;
                }
                let len = holds.len();
                let hold = &mut holds[n % len];
                let outcome = ledger.release(hold.id).await.unwrap();
                let expected = match hold.state {
                    State::Held => ReleaseOutcome::Released,
                    State::Expired => ReleaseOutcome::AlreadyExpired,
                    State::Settled => ReleaseOutcome::AlreadySettled,
                    State::Released => ReleaseOutcome::AlreadyReleased,
                };
                assert_eq!(outcome, expected);
                if hold.state == State::Held {
                    for &i in &hold.keys {
                        reserved[i] -= hold.amount;
                    }
                    hold.state = State::Released;
                }
            }
            Op::Expire { advance } => {
                clock.advance(advance);
                let now = clock.now().as_millis();
                let mut expired: Vec<ReservationId> = ledger
                    .expire(clock.now())
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.id)
                    .collect();
                let mut expected = Vec::new();
                for hold in holds
                    .iter_mut()
                    .filter(|h| h.state == State::Held && h.expires_at <= now)
                {
                    for &i in &hold.keys {
                        reserved[i] -= hold.amount;
                    }
                    hold.state = State::Expired;
                    expected.push(hold.id);
                }
                expired.sort();
                expected.sort();
                assert_eq!(expired, expected);
            }
        }
        for (i, key) in keys.iter().enumerate() {
            let u = ledger.usage(key).await.unwrap();
            assert_eq!(u.spent.cost_micros, spent[i], "spent of key {i}");
            assert_eq!(u.reserved.cost_micros, reserved[i], "reserved of key {i}");
            assert!(reserved[i] >= 0);
            if !overspent {
                assert!(
                    spent[i] + reserved[i] <= LIMITS[i],
                    "key {i} over its limit"
                );
            }
        }
    }
}

fn cost(cost_micros: i64) -> Amounts {
    Amounts {
        cost_micros,
        ..Amounts::default()
    }
}
