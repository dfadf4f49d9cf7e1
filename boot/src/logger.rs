//! The `log` facade, written to the serial console.

use log::{LevelFilter, Log, Metadata, Record};

struct SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            arch::println!("[{:<5}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: SerialLogger = SerialLogger;

/// Installs the logger; `level` comes from `loglevel=` on the command line
/// (error, warn, info, debug, trace, off; default info).
pub fn init(level: Option<&str>) {
    let filter = level
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(filter);
    }
}
