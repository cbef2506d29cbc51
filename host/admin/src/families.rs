//! The host's metric families as tables: a name, a Prometheus type, a help text and how
//! to read the value from one item (a component, a lock, the memory or timeout figures).
//! Adding a metric is adding a row.

use plugin_host::{ComponentStatus, LockStats, MemoryStatus, PressureLevel, TimeoutStats};

pub(crate) use crate::prometheus::Family;
use crate::prometheus::Kind;

/// One sample per component, labelled by component and plugin.
pub(crate) const COMPONENT: &[Family<ComponentStatus>] = &[
    Family {
        name: "plugin_host_streams_open",
        kind: Kind::Gauge,
        help: "Streams of the component open now.",
        value: |c| c.streams_open as f64,
    },
    Family {
        name: "plugin_host_stream_items_total",
        kind: Kind::Counter,
        help: "Items the component's streams sent.",
        value: |c| c.stream_items as f64,
    },
    Family {
        name: "plugin_host_stream_bytes_total",
        kind: Kind::Counter,
        help: "Bytes the component's streams sent.",
        value: |c| c.stream_bytes as f64,
    },
    Family {
        name: "plugin_host_component_calls_total",
        kind: Kind::Counter,
        help: "Calls made to the component.",
        value: |c| c.calls as f64,
    },
    Family {
        name: "plugin_host_component_cpu_seconds_total",
        kind: Kind::Counter,
        help: "CPU time the component's calls spent on the threads that ran them: in its worker, every call; in process, the sampled calls' ([metrics] sample_rate) scaled up.",
        value: |c| c.cpu_seconds,
    },
    Family {
        name: "plugin_host_component_call_errors_total",
        kind: Kind::Counter,
        help: "Calls that returned an error.",
        value: |c| c.call_errors as f64,
    },
    Family {
        name: "plugin_host_component_call_timeouts_total",
        kind: Kind::Counter,
        help: "Calls that timed out.",
        value: |c| c.call_timeouts as f64,
    },
    Family {
        name: "plugin_host_component_cpu_overruns_total",
        kind: Kind::Counter,
        help: "Calls abandoned for using more CPU time than cpu_per_call.",
        value: |c| c.cpu_overruns as f64,
    },
    Family {
        name: "plugin_host_component_inits_total",
        kind: Kind::Counter,
        help: "Successful initialisations.",
        value: |c| c.inits as f64,
    },
    Family {
        name: "plugin_host_component_init_failures_total",
        kind: Kind::Counter,
        help: "Failed initialisations.",
        value: |c| c.init_failures as f64,
    },
    Family {
        name: "plugin_host_component_evictions_total",
        kind: Kind::Counter,
        help: "Evictions to free memory.",
        value: |c| c.evictions as f64,
    },
    Family {
        name: "plugin_host_component_calls_saturated_total",
        kind: Kind::Counter,
        help: "Calls refused at once because the component ran max_concurrent_calls already.",
        value: |c| c.refused_saturated as f64,
    },
    Family {
        name: "plugin_host_component_calls_quarantined_total",
        kind: Kind::Counter,
        help: "Calls refused at once because the component was quarantined.",
        value: |c| c.refused_quarantined as f64,
    },
    Family {
        name: "plugin_host_component_log_suppressed_total",
        kind: Kind::Counter,
        help: "Log records dropped by the component's log rate limit.",
        value: |c| c.log_suppressed as f64,
    },
    Family {
        name: "plugin_host_component_calls_in_flight",
        kind: Kind::Gauge,
        help: "Calls running now, abandoned ones included.",
        value: |c| c.calls_in_flight as f64,
    },
    Family {
        name: "plugin_host_component_calls_abandoned",
        kind: Kind::Gauge,
        help: "Calls whose caller gave up (timeout) that still run.",
        value: |c| c.calls_abandoned as f64,
    },
    Family {
        name: "plugin_host_component_memory_estimate_bytes",
        kind: Kind::Gauge,
        help: "Declared memory estimate.",
        value: |c| c.memory_estimate as f64,
    },
];

/// One sample per lock, labelled by lock.
pub(crate) const LOCK: &[Family<LockStats>] = &[
    Family {
        name: "plugin_host_lock_acquisitions_total",
        kind: Kind::Counter,
        help: "Successful acquisitions.",
        value: |s| s.acquisitions as f64,
    },
    Family {
        name: "plugin_host_lock_contentions_total",
        kind: Kind::Counter,
        help: "Acquisitions that had to wait.",
        value: |s| s.contentions as f64,
    },
    Family {
        name: "plugin_host_lock_timeouts_total",
        kind: Kind::Counter,
        help: "Waits that timed out.",
        value: |s| s.timeouts as f64,
    },
    Family {
        name: "plugin_host_lock_order_violations_total",
        kind: Kind::Counter,
        help: "Out-of-order acquisitions.",
        value: |s| s.order_violations as f64,
    },
    Family {
        name: "plugin_host_lock_deadlocks_total",
        kind: Kind::Counter,
        help: "Acquisitions refused as deadlocks.",
        value: |s| s.deadlocks as f64,
    },
    Family {
        name: "plugin_host_lock_wait_seconds_total",
        kind: Kind::Counter,
        help: "Time spent waiting.",
        value: |s| s.total_wait_us as f64 / 1e6,
    },
    Family {
        name: "plugin_host_lock_hold_seconds_total",
        kind: Kind::Counter,
        help: "Time held (completed holds; estimated from a timed sample).",
        value: |s| s.total_hold_us as f64 / 1e6,
    },
    Family {
        name: "plugin_host_lock_max_wait_seconds",
        kind: Kind::Gauge,
        help: "Longest wait.",
        value: |s| s.max_wait_us as f64 / 1e6,
    },
    Family {
        name: "plugin_host_lock_waiters",
        kind: Kind::Gauge,
        help: "Holders waiting now.",
        value: |s| s.waiters.len() as f64,
    },
];

/// One unlabelled sample each, from the memory picture.
pub(crate) const MEMORY: &[Family<MemoryStatus>] = &[
    Family {
        name: "plugin_host_memory_rss_bytes",
        kind: Kind::Gauge,
        help: "Resident set size of the host process.",
        value: |m| m.rss as f64,
    },
    Family {
        name: "plugin_host_memory_limit_bytes",
        kind: Kind::Gauge,
        help: "The memory budget.",
        value: |m| {
            if m.limit == u64::MAX {
                f64::INFINITY
            } else {
                m.limit as f64
            }
        },
    },
    Family {
        name: "plugin_host_memory_reserved_bytes",
        kind: Kind::Gauge,
        help: "Bytes reserved by in-flight initialisations.",
        value: |m| m.reserved as f64,
    },
    Family {
        name: "plugin_host_memory_pressure_level",
        kind: Kind::Gauge,
        help: "0 normal, 1 medium, 2 high, 3 critical.",
        value: |m| match m.pressure {
            PressureLevel::Normal => 0.0,
            PressureLevel::Medium => 1.0,
            PressureLevel::High => 2.0,
            PressureLevel::Critical => 3.0,
        },
    },
    Family {
        name: "plugin_host_memory_evictions_total",
        kind: Kind::Counter,
        help: "Components evicted to free memory.",
        value: |m| m.evictions as f64,
    },
    Family {
        name: "plugin_host_memory_reclaimed_bytes_total",
        kind: Kind::Counter,
        help: "RSS reclaimed by evictions, measured.",
        value: |m| m.reclaimed as f64,
    },
];

/// One unlabelled sample each, from the timeout counters.
pub(crate) const TIMEOUTS: &[Family<TimeoutStats>] = &[
    Family {
        name: "plugin_host_timeouts_started_total",
        kind: Kind::Counter,
        help: "Operations started under a timeout.",
        value: |t| t.started as f64,
    },
    Family {
        name: "plugin_host_timeouts_expired_total",
        kind: Kind::Counter,
        help: "Operations whose timeout expired.",
        value: |t| t.expired as f64,
    },
    Family {
        name: "plugin_host_timeouts_cancelled_total",
        kind: Kind::Counter,
        help: "Operations cancelled by id.",
        value: |t| t.cancelled as f64,
    },
    Family {
        name: "plugin_host_timeouts_active",
        kind: Kind::Gauge,
        help: "Operations running under a timeout now.",
        value: |t| t.active as f64,
    },
];
