//! A progress bar on stderr when it is a terminal (and not --quiet); nothing otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::jobs::backup::Progress;

pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        let on = !quiet && std::io::stderr().is_terminal();
        Bar {
            bar: on.then(|| {
                let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            }),
        }
    }

    /// A closure for jobs that report bytes done.
    pub fn setter(&self) -> impl Fn(u64) + Sync + '_ {
        move |n| self.set(n)
    }
}

impl Progress for Bar {
    fn begin(&self, what: &str, total: Option<u64>) {
        if let Some(b) = &self.bar {
            b.reset();
            b.set_message(what.to_string());
            b.set_length(total.unwrap_or(0));
        }
    }
    fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }
    fn end(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
