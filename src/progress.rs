//! Progress on the terminal for long commands (`enqueue --from`, `migrate`, `bench`): drawn on
//! stderr only when it is a terminal, so that piped output and logs stay clean.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items named `unit` (`jobs`), with rate and time left.
pub(crate) fn bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{{msg}} {{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A spinner saying what is going on, for steps of unknown length.
pub(crate) fn spinner(message: impl Into<String>) -> ProgressBar {
    let spinner = ProgressBar::new_spinner().with_message(message.into());
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}
