//! How socklab talks to people: where long-running commands report events, whether to
//! use colour, and the shared look of tables and progress bars.
//!
//! Library code never prints. A server or client is handed a [`Reporter`]; the binary
//! builds one that writes to stdout (and exits quietly when the reader of a pipe goes
//! away), a test builds one that collects lines in memory.

use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};

/// How chatty a command is: `-q` gives [`Verbosity::Quiet`], `-v` [`Verbosity::Verbose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// Only results and errors.
    Quiet,
    /// Results and status lines such as "listening on ...".
    #[default]
    Normal,
    /// Also one line per connection, datagram or read.
    Verbose,
}

/// The `--color` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMode {
    /// Colour when stdout is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour (even into a pipe), whatever `NO_COLOR` says.
    Always,
    /// Never colour.
    Never,
}

/// Decides once whether output is coloured. `NO_COLOR` (any non-empty value, see
/// no-color.org) turns colour off in `auto` mode only: an explicit `--color always` wins.
pub fn decide_color(mode: ColorMode, stdout_is_terminal: bool, no_color: Option<&str>) -> bool {
    match mode {
        ColorMode::Always => true,
        ColorMode::Never => false,
        ColorMode::Auto => stdout_is_terminal && no_color.is_none_or(str::is_empty),
    }
}

/// Whether colour was switched on for this process (see [`decide_color`]).
pub fn color_enabled() -> bool {
    colored::control::SHOULD_COLORIZE.should_colorize()
}

type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Receives the event lines of a long-running command (a server's log, a client's
/// replies). Cheap to clone; every clone writes to the same place.
#[derive(Clone)]
pub struct Reporter {
    sink: Sink,
    verbosity: Verbosity,
}

/// The lines a [`Reporter::capture`] reporter has received, for tests.
pub type Captured = Arc<Mutex<Vec<String>>>;

impl Reporter {
    /// A reporter that hands each line to `sink`.
    pub fn new(verbosity: Verbosity, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Reporter {
            sink: Arc::new(sink),
            verbosity,
        }
    }

    /// A reporter that keeps every line in memory, and the handle to read them.
    pub fn capture(verbosity: Verbosity) -> (Self, Captured) {
        let lines: Captured = Arc::default();
        let store = Arc::clone(&lines);
        let reporter = Reporter::new(verbosity, move |line| {
            if let Ok(mut guard) = store.lock() {
                guard.push(line.to_string());
            }
        });
        (reporter, lines)
    }

    /// A reporter that drops everything (benchmarks, embedded servers in the demo).
    pub fn silent() -> Self {
        Reporter::new(Verbosity::Quiet, |_| {})
    }

    /// The verbosity this reporter was built with.
    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    /// A result line: always shown (a reply, a read size the user asked to see).
    pub fn result(&self, line: impl Display) {
        (self.sink)(&line.to_string());
    }

    /// A status line ("listening on ..."): hidden by `-q`.
    pub fn info(&self, line: impl Display) {
        if self.verbosity >= Verbosity::Normal {
            (self.sink)(&line.to_string());
        }
    }

    /// A detail line (one per connection or datagram): shown only with `-v`.
    pub fn detail(&self, line: impl Display) {
        if self.verbosity >= Verbosity::Verbose {
            (self.sink)(&line.to_string());
        }
    }

    /// Whether [`Reporter::detail`] lines are shown, so callers can skip formatting them.
    pub fn is_verbose(&self) -> bool {
        self.verbosity >= Verbosity::Verbose
    }
}

/// A table in socklab's house style: compact UTF-8 borders, bold coloured header when
/// colour is on, wrapped to the terminal's width when there is one.
pub fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    if color_enabled() {
        table.enforce_styling();
        table.set_header(
            headers
                .iter()
                .map(|h| Cell::new(h).add_attribute(Attribute::Bold).fg(Color::Cyan)),
        );
    } else {
        // No styling codes, and a fixed layout so golden files do not depend on the
        // terminal the tests happened to run in.
        table.force_no_tty();
        table.set_header(headers.iter().map(Cell::new));
    }
    table.set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// A byte-count progress bar, or a hidden one when `visible` is false (stderr is not a
/// terminal, or `-q`): progress bars are for people, never for pipes and logs.
pub fn progress_bar(total: u64, visible: bool, label: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar
}

/// Formats a duration in milliseconds with three decimals, as ping does (`0.142`).
pub fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Formats a duration in microseconds with one decimal (`85.3`).
pub fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_decision_follows_mode_terminal_and_no_color() {
        assert!(decide_color(ColorMode::Auto, true, None));
        assert!(!decide_color(ColorMode::Auto, false, None));
        assert!(!decide_color(ColorMode::Auto, true, Some("1")));
        // NO_COLOR set but empty does not count, per no-color.org.
        assert!(decide_color(ColorMode::Auto, true, Some("")));
        assert!(decide_color(ColorMode::Always, false, Some("1")));
        assert!(!decide_color(ColorMode::Never, true, None));
    }

    #[test]
    fn reporter_levels_filter_lines() {
        let (quiet, lines) = Reporter::capture(Verbosity::Quiet);
        quiet.result("r");
        quiet.info("i");
        quiet.detail("d");
        assert_eq!(*lines.lock().unwrap(), vec!["r"]);

        let (verbose, lines) = Reporter::capture(Verbosity::Verbose);
        verbose.result("r");
        verbose.info("i");
        verbose.detail("d");
        assert_eq!(*lines.lock().unwrap(), vec!["r", "i", "d"]);
    }

    #[test]
    fn time_formats() {
        assert_eq!(millis(Duration::from_micros(142)), "0.142");
        assert_eq!(micros(Duration::from_nanos(85_300)), "85.3");
    }
}
