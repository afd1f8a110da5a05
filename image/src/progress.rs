//! Build progress: a spinner per step on a terminal, plain lines otherwise (CI, logs).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the build's named steps on standard error.
#[derive(Debug)]
pub struct Progress {
    total: usize,
    done: usize,
    current: Option<(ProgressBar, Instant)>,
    interactive: bool,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            current: None,
            interactive: std::io::stderr().is_terminal(),
        }
    }

    /// Starts the next step, finishing the previous one.
    pub fn step(&mut self, name: &str) {
        self.finish_step();
        self.done += 1;
        let label = format!("[{}/{}] {name}", self.done, self.total);
        let bar = if self.interactive {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("static template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            eprintln!("cairn-image: {label}");
            ProgressBar::hidden()
        };
        bar.set_message(label);
        self.current = Some((bar, Instant::now()));
    }

    /// Adds detail to the running step (a package name, a file count).
    pub fn detail(&self, text: &str) {
        if let Some((bar, _)) = &self.current {
            if self.interactive {
                bar.set_message(format!("[{}/{}] {text}", self.done, self.total));
            }
        }
    }

    /// Finishes the last step.
    pub fn finish(mut self) {
        self.finish_step();
    }

    fn finish_step(&mut self) {
        if let Some((bar, started)) = self.current.take() {
            let took = started.elapsed().as_secs_f32();
            if self.interactive {
                bar.finish_with_message(format!("{} ({took:.1}s)", bar.message()));
            } else {
                eprintln!("cairn-image:   done in {took:.1}s");
            }
        }
    }
}
