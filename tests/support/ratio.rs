//! Prints how a measured benchmark compares with a baseline measured in the same run,
//! from the estimates criterion has just written under `target/criterion`.

use std::path::PathBuf;

fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// Mean time per iteration in nanoseconds of `group/id`, from this run.
fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// Prints `subject` against `baseline` in `group` as a ratio.
pub fn print_ratio(group: &str, subject: &str, baseline: &str) {
    match (mean_ns(group, subject), mean_ns(group, baseline)) {
        (Some(s), Some(b)) if b > 0.0 => println!(
            "ratio {group}: {subject} {s:.1} ns / {baseline} {b:.1} ns = {:.2}x",
            s / b
        ),
        _ => println!("ratio {group}: {subject} vs {baseline}: no estimates (run without --test)"),
    }
}

/// Prints how much longer `subject` takes than `baseline` in `group`, in nanoseconds.
pub fn print_difference(group: &str, subject: &str, baseline: &str) {
    match (mean_ns(group, subject), mean_ns(group, baseline)) {
        (Some(s), Some(b)) => println!(
            "difference {group}: {subject} {s:.1} ns - {baseline} {b:.1} ns = {:+.1} ns",
            s - b
        ),
        _ => println!(
            "difference {group}: {subject} vs {baseline}: no estimates (run without --test)"
        ),
    }
}

/// Prints the throughput of `subject` as a share of `baseline`'s in `group` (both
/// measured over the same work per iteration), with the goal it is held to.
pub fn print_throughput_share(group: &str, subject: &str, baseline: &str, goal: f64) {
    match (mean_ns(group, subject), mean_ns(group, baseline)) {
        (Some(s), Some(b)) if s > 0.0 => {
            let share = b / s;
            let verdict = if share >= goal { "met" } else { "not met" };
            println!(
                "throughput {group}: {subject} / {baseline} = {share:.2}x (goal >= {goal}x, {verdict})"
            );
        }
        _ => println!(
            "throughput {group}: {subject} vs {baseline}: no estimates (run without --test)"
        ),
    }
}

/// Prints what `subject` adds to `direct` (both in `group`) as a multiple of `yardstick`'s
/// time, with the goal it is held to: the cost of a path's bookkeeping in units of a
/// known cheap operation measured in the same run.
pub fn print_overhead(group: &str, subject: &str, direct: &str, yardstick: &str, goal: f64) {
    match (
        mean_ns(group, subject),
        mean_ns(group, direct),
        mean_ns(group, yardstick),
    ) {
        (Some(s), Some(d), Some(y)) if y > 0.0 => {
            let times = (s - d) / y;
            let verdict = if times <= goal { "met" } else { "not met" };
            println!(
                "overhead {group}: ({subject} {s:.1} ns - {direct} {d:.1} ns) / {yardstick} {y:.1} ns = {times:.2}x (goal <= {goal}x, {verdict})"
            );
        }
        _ => println!(
            "overhead {group}: {subject} vs {direct} and {yardstick}: no estimates (run without --test)"
        ),
    }
}

/// Measures what `subject` adds to `baseline` per run, paired: each of `rounds` rounds
/// times `batch` runs of each, one right after the other (which goes first alternates),
/// and the median of the rounds' differences is printed with the spread of their middle
/// half, against the goal. Criterion times rows minutes apart, and on a shared machine
/// two rows drift apart by more than a few nanoseconds between them; a pair of batches
/// timed together sees the same machine.
pub fn print_paired_difference(
    name: &str,
    mut baseline: impl FnMut(),
    mut subject: impl FnMut(),
    goal_ns: f64,
) {
    const ROUNDS: usize = 201;
    const BATCH: u32 = 100_000;
    let time = |f: &mut dyn FnMut()| {
        let started = std::time::Instant::now();
        for _ in 0..BATCH {
            f();
        }
        started.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH)
    };
    // Warm both up first: the first batches pay for caches and the clock's climb.
    time(&mut baseline);
    time(&mut subject);
    let mut differences: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            if round % 2 == 0 {
                let b = time(&mut baseline);
                time(&mut subject) - b
            } else {
                let s = time(&mut subject);
                s - time(&mut baseline)
            }
        })
        .collect();
    differences.sort_by(f64::total_cmp);
    let median = differences[ROUNDS / 2];
    let (low, high) = (differences[ROUNDS / 4], differences[3 * ROUNDS / 4]);
    let verdict = if median <= goal_ns { "met" } else { "not met" };
    println!(
        "paired difference {name}: median {median:+.2} ns per run over {ROUNDS} rounds of {BATCH} (middle half {low:+.2} to {high:+.2} ns; goal <= +{goal_ns} ns, {verdict})"
    );
}
