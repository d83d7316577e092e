//! socklab's integration tests: one test binary, a module per subcommand, driving the
//! real `socklab` binary over loopback (see `util.rs` for the harness).
//!
//! Every test binds port 0 (or asks our servers to, and reads the port they print),
//! puts a timeout on every wait, and talks only to 127.0.0.1.

mod analyze;
mod analyze_views;
mod capture;
mod cli;
mod echo;
mod file;
mod forum;
mod forum_robust;
mod golden;
mod lab04;
mod proxy;
mod scenarios;
mod synth;
mod util;
