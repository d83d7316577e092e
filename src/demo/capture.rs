//! Step 10 of `socklab demo` (lab 4): the demo records its own traffic on the loopback
//! interface while steps 1 to 4 run, then analyzes the recording the way the capture
//! lab does.
//!
//! ```text
//!   steps 1-4 ──packets on lo──► live capture (a thread) ──► socklab-demo-PID.pcap
//!                                                                   │
//!   step 10:  socklab analyze FILE summary / flows / forum  ◄────────┘
//! ```
//!
//! Capturing needs root or the CAP_NET_RAW capability. Without it the demo says why
//! and goes on: the capture is a bonus, not a step that can fail the demo.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{heading, DemoError};
use crate::capture::analyze::{self, AnalyzeOptions, View};
use crate::capture::live::{self, LiveOptions, LiveSummary};
use crate::capture::CaptureError;
use crate::output::Reporter;

/// The interface the demo's servers and clients talk over.
const INTERFACE: &str = "lo";

/// Only the demo's traffic: everything it sends goes between 127.0.0.1 and itself.
const FILTER: &str = "host 127.0.0.1";

/// How long packets still in the kernel's capture buffer get before the capture stops:
/// the last FIN and ACK of step 4 are sent just before it.
const DRAIN: Duration = Duration::from_millis(200);

/// A capture running in a blocking thread.
pub(super) struct Recording {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    worker: JoinHandle<Result<LiveSummary, CaptureError>>,
}

/// Starts capturing on `lo` into a pcap file in the temporary directory, and returns
/// once the capture is active (packets sent after this are recorded). Returns `None`,
/// after saying why, when capturing is not possible here (not root, no libpcap
/// access to `lo`).
pub(super) async fn start(reporter: &Reporter) -> Option<Recording> {
    let path = std::env::temp_dir().join(format!("socklab-demo-{}.pcap", std::process::id()));
    let options = LiveOptions {
        interface: INTERFACE.to_string(),
        filter: Some(FILTER.to_string()),
        write: Some(path.clone()),
        count: None,
        duration: None,
        snaplen: live::DEFAULT_SNAPLEN,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (opened, is_open) = oneshot::channel();
    let worker = {
        let stop = Arc::clone(&stop);
        tokio::task::spawn_blocking(move || {
            let mut capture = match live::open(&options) {
                Ok(capture) => capture,
                Err(error) => {
                    let _ = opened.send(Err(error.to_string()));
                    return Err(error);
                }
            };
            let _ = opened.send(Ok(()));
            capture.run(&options, &stop, |_| true)
        })
    };
    match is_open.await {
        Ok(Ok(())) => Some(Recording { path, stop, worker }),
        Ok(Err(why)) => {
            reporter.info(format!(
                "(not recording the demo's packets for step 10: {why})"
            ));
            None
        }
        Err(_) => {
            reporter
                .info("(not recording the demo's packets for step 10: the capture thread stopped)");
            None
        }
    }
}

/// A finished recording, ready to be analyzed.
pub(super) struct Recorded {
    path: PathBuf,
    summary: LiveSummary,
}

impl Recording {
    /// Stops the capture once the packets still queued in the kernel have arrived.
    ///
    /// # Errors
    /// [`DemoError::Capture`] when the recording cannot be finished.
    pub(super) async fn stop(self) -> Result<Recorded, DemoError> {
        // No readiness signal says "the kernel has handed over every packet": a short
        // pause lets the last segments of step 4 reach the capture.
        tokio::time::sleep(DRAIN).await;
        self.stop.store(true, Ordering::Relaxed);
        let summary = match self.worker.await {
            Ok(result) => result?,
            Err(_) => return Err(DemoError::Panicked { what: "capture" }),
        };
        Ok(Recorded {
            path: self.path,
            summary,
        })
    }
}

impl Recorded {
    /// Prints step 10: what the analyzer makes of the recording.
    ///
    /// # Errors
    /// [`DemoError::Capture`] when the recording cannot be read back.
    pub(super) fn analyze(self, reporter: &Reporter) -> Result<(), DemoError> {
        let summary = self.summary;
        heading(
            reporter,
            "10. What crossed the wire in steps 1 to 4 (lab 4): the demo captured its own packets",
        );
        let file = self.path.display().to_string();
        reporter.info(format!(
            "$ socklab capture -i {INTERFACE} -f '{FILTER}' -w {file}   ({} packets)",
            summary.written.unwrap_or(summary.captured)
        ));
        for (view, name) in [
            (View::Summary, "summary"),
            (View::Flows, "flows"),
            (View::Forum, "forum"),
        ] {
            reporter.info(format!("$ socklab analyze {file} {name}"));
            let options = AnalyzeOptions {
                path: self.path.clone(),
                view,
                filter: None,
                json: false,
                explain: false,
            };
            let mut text = Vec::new();
            analyze::analyze(&options, &mut text)?;
            reporter.result(String::from_utf8_lossy(&text).trim_end());
        }
        reporter.info(format!(
            "(the capture stays in {file}: try `socklab analyze {file} handshakes` or `ladder 0`)"
        ));
        Ok(())
    }
}
