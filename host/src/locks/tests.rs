use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn manager() -> LockManager {
    LockManager::builder()
        .with_default_timeout(Duration::from_secs(5))
        .build()
}

/// `holder` takes lock `name`, waiting up to its timeout.
async fn take(
    locks: &LockManager,
    holder: &Holder,
    name: &str,
) -> Result<LockGuard<'static>, LockError> {
    let lock = locks.lock(name)?;
    let guard = holder.acquire(&lock).await?.into_owned();
    Ok(guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_then_b_against_b_then_a_fails_one_acquire_at_once_with_the_cycle() {
    let locks = manager();
    let (task_1, task_2) = (locks.holder("task-1"), locks.holder("task-2"));
    let a = take(&locks, &task_1, "a").await.unwrap();
    let b = take(&locks, &task_2, "b").await.unwrap();
    let first = {
        let (locks, task_1) = (locks.clone(), task_1.clone());
        tokio::spawn(async move {
            let b = take(&locks, &task_1, "b").await?;
            drop(b);
            drop(a);
            Ok::<_, LockError>(())
        })
    };
    while locks.waits().is_empty() {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let err = take(&locks, &task_2, "a").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused at once, not after the 5 s timeout"
    );
    match &err {
        LockError::DeadlockDetected { cycle, .. } => {
            let pairs: Vec<(&str, &str)> = cycle
                .iter()
                .map(|(l, h)| (l.as_str(), h.as_str()))
                .collect();
            assert_eq!(pairs, [("a", "task-1"), ("b", "task-2")]);
            assert!(
                err.to_string().contains("`a` <- task-1, `b` <- task-2"),
                "{err}"
            );
        }
        other => panic!("expected a deadlock, got {other}"),
    }
    drop(b);
    first.await.unwrap().expect("the other task completes");
    assert_eq!(locks.stats_of("a").unwrap().deadlocks, 1);
    assert_eq!(locks.stats_of("b").unwrap().deadlocks, 0);
    assert!(locks.waits().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_holders_with_one_label_queue_for_a_lock_in_turn() {
    let locks = manager();
    let book = locks.lock("book").unwrap();
    let first = locks.holder("locker.with_lock");
    let held = first.acquire(&book).await.unwrap();
    let second = locks.holder("locker.with_lock");
    let again = first.acquire(&book).await.unwrap_err();
    assert!(matches!(again, LockError::AlreadyHeld { .. }), "{again}");
    let waiting = {
        let book = book.clone();
        tokio::spawn(async move { second.acquire(&book).await.map(|g| g.holder().to_owned()) })
    };
    while locks.waits().is_empty() {
        tokio::task::yield_now().await;
    }
    drop(held);
    assert_eq!(waiting.await.unwrap().unwrap(), "locker.with_lock");
    assert_eq!(locks.stats_of("book").unwrap().contentions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_waiters_get_a_lock_in_the_order_they_asked_for_it() {
    let locks = manager();
    let book = locks.lock("book").unwrap();
    let first = locks.holder("first");
    let held = first.acquire(&book).await.unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for n in 1..=4 {
        let label = format!("waiter-{n}");
        let (book, order, holder) = (book.clone(), Arc::clone(&order), locks.holder(&label));
        waiters.push(tokio::spawn(async move {
            let guard = holder.acquire(&book).await.unwrap();
            order.lock().push(label);
            drop(guard);
        }));
        // The next one asks only once this one is queued.
        let queued: Vec<String> = (1..=n).map(|k| format!("waiter-{k}")).collect();
        while locks.stats_of("book").unwrap().waiters != queued {
            tokio::task::yield_now().await;
        }
    }
    drop(held);
    for waiter in waiters {
        waiter.await.unwrap();
    }
    assert_eq!(
        *order.lock(),
        ["waiter-1", "waiter-2", "waiter-3", "waiter-4"]
    );
    assert_eq!(locks.stats_of("book").unwrap().contentions, 4);
}

#[tokio::test]
async fn a_waiter_that_times_out_leaves_no_ghost() {
    let locks = manager();
    let held = locks.acquire("a", "owner").await.unwrap();
    let a = locks.lock("a").unwrap();
    let err = locks
        .holder("impatient")
        .acquire_timeout(&a, Duration::from_millis(30))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LockError::Timeout { ref held_by, .. } if held_by.as_deref() == Some("owner")),
        "{err}"
    );
    assert!(locks.waits().is_empty(), "the wait-for graph must be empty");
    assert!(locks.stats_of("a").unwrap().waiters.is_empty());
    drop(held);
    let third = locks.holder("third");
    let third = third
        .acquire_timeout(&a, Duration::from_millis(30))
        .await
        .unwrap();
    assert_eq!(
        locks.stats_of("a").unwrap().holder.as_deref(),
        Some("third")
    );
    drop(third);
    assert_eq!(locks.stats_of("a").unwrap().holder, None);
}

#[tokio::test]
async fn a_cancelled_waiter_leaves_no_ghost() {
    let locks = manager();
    let held = locks.acquire("a", "owner").await.unwrap();
    let cancelled =
        tokio::time::timeout(Duration::from_millis(20), locks.acquire("a", "gives-up")).await;
    assert!(cancelled.is_err(), "the outer timeout cancelled the wait");
    assert!(locks.waits().is_empty());
    drop(held);
    let a = locks.lock("a").unwrap();
    let next = locks.holder("next");
    let next = next
        .acquire_timeout(&a, Duration::from_millis(30))
        .await
        .unwrap();
    assert_eq!(next.holder(), "next");
}

#[tokio::test]
async fn statistics_match_a_scripted_schedule_exactly() {
    let locks = LockManager::builder()
        .with_order(["accounts", "orders"])
        .with_default_timeout(Duration::from_secs(5))
        .build();
    // 1. uncontended acquire and release, twice.
    for _ in 0..2 {
        locks
            .acquire("accounts", "a")
            .await
            .unwrap()
            .release()
            .unwrap();
    }
    // 2. one contended acquire: b waits for a.
    let held = locks.acquire("accounts", "a").await.unwrap();
    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move { locks.acquire("accounts", "b").await.map(|g| g.release()) })
    };
    while locks.waits().is_empty() {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    held.release().unwrap();
    waiter.await.unwrap().unwrap().unwrap();
    // 3. one timeout.
    let held = locks.acquire("accounts", "a").await.unwrap();
    let accounts = locks.lock("accounts").unwrap();
    locks
        .holder("c")
        .acquire_timeout(&accounts, Duration::from_millis(10))
        .await
        .unwrap_err();
    drop(held);
    // 4. one order violation: orders before accounts is configured, so accounts after orders is refused.
    let d = locks.holder("d");
    let orders = take(&locks, &d, "orders").await.unwrap();
    let err = take(&locks, &d, "accounts").await.unwrap_err();
    assert!(matches!(err, LockError::OrderViolation { .. }), "{err}");
    drop(orders);

    let accounts = locks.stats_of("accounts").unwrap();
    assert_eq!(accounts.acquisitions, 5, "{accounts:?}");
    assert_eq!(accounts.contentions, 2, "{accounts:?}");
    assert_eq!(accounts.timeouts, 1);
    assert_eq!(accounts.order_violations, 1);
    assert_eq!(accounts.deadlocks, 0);
    assert!(accounts.max_wait_us >= 20_000, "{accounts:?}");
    assert!(accounts.total_hold_us >= accounts.max_hold_us);
    assert_eq!(
        (accounts.holder.as_ref(), accounts.waiters.len()),
        (None, 0)
    );
    assert_eq!(accounts.rank, Some(0));
    let orders = locks.stats_of("orders").unwrap();
    assert_eq!(
        (
            orders.acquisitions,
            orders.contentions,
            orders.order_violations
        ),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn an_inversion_of_the_observed_order_names_where_the_order_was_first_seen() {
    let locks = manager();
    {
        let first = locks.holder("first-task");
        let _c = take(&locks, &first, "c").await.unwrap();
        let _d = take(&locks, &first, "d").await.unwrap();
    }
    let second = locks.holder("second-task");
    let _d = take(&locks, &second, "d").await.unwrap();
    let err = take(&locks, &second, "c").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LockError::OrderViolation { .. }), "{text}");
    assert!(text.contains("first-task took `c` before `d`"), "{text}");
    assert_eq!(locks.global_order(&["d", "c"]), ["c", "d"]);
}

#[tokio::test]
async fn warn_mode_logs_an_inversion_and_lets_it_through() {
    let locks = LockManager::builder()
        .with_order(["a", "b"])
        .with_order_violation(OrderViolation::Warn)
        .build();
    let t = locks.holder("t");
    let _b = take(&locks, &t, "b").await.unwrap();
    let _a = take(&locks, &t, "a").await.expect("warn mode allows it");
    assert_eq!(locks.stats_of("a").unwrap().order_violations, 1);
}

#[tokio::test]
async fn acquire_many_takes_locks_in_the_global_order_and_reentry_is_refused() {
    let locks = LockManager::builder().with_order(["z", "y"]).build();
    let guards = locks.acquire_many(&["x", "y", "z"], "t").await.unwrap();
    let names: Vec<&str> = guards.iter().map(LockGuard::name).collect();
    assert_eq!(names, ["z", "y", "x"]);
    let t = locks.holder("t");
    let _w = take(&locks, &t, "w").await.unwrap();
    let err = take(&locks, &t, "w").await.unwrap_err();
    assert!(matches!(err, LockError::AlreadyHeld { .. }), "{err}");
}

#[test]
fn a_blocking_thread_waits_for_a_lock_held_by_another_thread() {
    let locks = manager();
    let held = locks
        .acquire_blocking("a", "main", Duration::from_secs(1))
        .unwrap();
    let other = {
        let locks = locks.clone();
        std::thread::spawn(move || {
            locks
                .acquire_blocking("a", "worker", Duration::from_secs(5))
                .map(|g| g.holder().to_owned())
        })
    };
    while locks.waits().is_empty() {
        std::thread::yield_now();
    }
    drop(held);
    assert_eq!(other.join().unwrap().unwrap(), "worker");
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// Task -> rounds -> lock indices taken in that order within the round.
fn schedules() -> impl Strategy<Value = Vec<Vec<Vec<usize>>>> {
    let round =
        proptest::sample::subsequence((0..NAMES.len()).collect::<Vec<_>>(), 1..=3).prop_shuffle();
    proptest::collection::vec(proptest::collection::vec(round, 1..4), 2..5)
}

/// Runs every task concurrently; returns the errors met. Panics if a schedule hangs.
fn run_schedule(locks: &LockManager, tasks: &[Vec<Vec<usize>>]) -> Vec<LockError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let handles: Vec<_> = tasks
            .iter()
            .enumerate()
            .map(|(task, rounds)| {
                let locks = locks.clone();
                let rounds = rounds.clone();
                tokio::spawn(async move {
                    // Tasks share labels two by two, as concurrent calls of one
                    // component method do; each is still a holder of its own.
                    let holder = locks.holder(format!("component-{}.method", task / 2));
                    let mut errors = Vec::new();
                    for round in rounds {
                        let mut guards = Vec::new();
                        for index in round {
                            match take(&locks, &holder, NAMES[index]).await {
                                Ok(guard) => guards.push(guard),
                                Err(err) => {
                                    errors.push(err);
                                    break;
                                }
                            }
                            tokio::task::yield_now().await;
                        }
                        tokio::time::sleep(Duration::from_micros(200)).await;
                        drop(guards);
                    }
                    errors
                })
            })
            .collect();
        let all = async {
            let mut errors = Vec::new();
            for handle in handles {
                errors.extend(handle.await.unwrap());
            }
            errors
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("a schedule blocked")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn no_schedule_blocks_and_every_would_be_deadlock_is_refused(tasks in schedules(), warn in any::<bool>()) {
        let policy = if warn { OrderViolation::Warn } else { OrderViolation::Deny };
        let locks = LockManager::builder()
            .with_order_violation(policy)
            .with_default_timeout(Duration::from_secs(20))
            .build();
        let errors = run_schedule(&locks, &tasks);
        for err in &errors {
            prop_assert!(
                matches!(err, LockError::DeadlockDetected { .. } | LockError::OrderViolation { .. }),
                "unexpected error: {}", err
            );
        }
        prop_assert!(locks.waits().is_empty());
        prop_assert!(locks.stats().iter().all(|s| s.holder.is_none() && s.waiters.is_empty()));
    }

    #[test]
    fn contention_without_nesting_is_never_called_a_deadlock(tasks in schedules()) {
        // One lock per round: nobody holds one lock while waiting for another, so no
        // cycle can exist, and every refusal would be a false positive.
        let tasks: Vec<Vec<Vec<usize>>> = tasks
            .into_iter()
            .map(|rounds| rounds.into_iter().map(|round| vec![round[0]]).collect())
            .collect();
        let locks = LockManager::builder().with_default_timeout(Duration::from_secs(20)).build();
        let errors = run_schedule(&locks, &tasks);
        prop_assert!(errors.is_empty(), "{:?}", errors);
        prop_assert!(locks.stats().iter().all(|s| s.holder.is_none() && s.waiters.is_empty()));
    }

    #[test]
    fn schedules_that_respect_one_order_never_deadlock_or_violate(mut tasks in schedules()) {
        for round in tasks.iter_mut().flatten() {
            round.sort_unstable();
        }
        let locks = LockManager::builder().with_default_timeout(Duration::from_secs(20)).build();
        let errors = run_schedule(&locks, &tasks);
        prop_assert!(errors.is_empty(), "{:?}", errors);
    }
}
