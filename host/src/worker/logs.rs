//! The worker's own log records (not its plugin's, which travel through the plugin's
//! context): a `tracing` subscriber that sends each record of info level and above to
//! the host, whose log shows it with the plugin and the worker's pid. Installed first, so
//! a warning from setting up the sandbox reaches the host as surely as one from serving.

use std::{fmt::Write as _, sync::Arc};

use tracing::{
    field::{Field, Visit},
    Event, Level, Metadata, Subscriber,
};
use tracing_subscriber::{
    layer::{Context, SubscriberExt},
    Layer,
};

use super::conn::Conn;
use crate::protocol::FromWorker;

/// Sends this process's records to the host over `conn`, from now on.
pub(super) fn forward_to(conn: &Arc<Conn>) {
    let layer = Forward {
        conn: Arc::clone(conn),
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

struct Forward {
    conn: Arc<Conn>,
}

impl<S: Subscriber> Layer<S> for Forward {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        *metadata.level() <= Level::INFO
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let metadata = event.metadata();
        self.conn.send(&FromWorker::WorkerLog {
            level: level_number(*metadata.level()),
            target: metadata.target().to_owned(),
            message: text.0,
        });
    }
}

/// The level as the protocol numbers it (0 trace .. 4 error).
fn level_number(level: Level) -> u8 {
    match level {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

/// A record's message, then its other fields as `name=value`.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
