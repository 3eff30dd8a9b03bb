//! What the workspace's command-line tools share, so each says it once: the flags every command takes
//! (`--threads`, `--quiet`), progress bars that stay out of logs and `--quiet` runs, usage errors for flags that do
//! not apply, and the one-line error with its exit code (1 for a failure, 2 for a usage error, as clap's own). And
//! [`engine_weights`], the one place a model file's weights become the engine's: the format crate (`caffemodel`)
//! knows no engine, and the engine no file format.

#![warn(missing_docs)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// The flags every command takes. Flatten into a clap parser; mark them `global` so they also follow a subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Common {
    /// Worker threads for the parallel parts (default: one per core; RAYON_NUM_THREADS is honoured too).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// No progress bars and no notes on stderr: only results (stdout) and errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

static QUIET: AtomicBool = AtomicBool::new(false);

impl Common {
    /// Puts the flags in force and runs the whole command, `work`, inside its thread pool (`--threads`, else
    /// RAYON_NUM_THREADS, else one thread per core). Running inside the pool, not beside it, spares every parallel
    /// step a hand-over to the pool and back (two futex waits per layer and batch; 7% of a one-thread eval).
    ///
    /// # Errors
    /// When the thread pool cannot be built, and whatever `work` returns.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
        QUIET.store(self.quiet, Ordering::Relaxed);
        // The main thread's usual 8 MiB stack for the work, rather than a spawned thread's 2 MiB.
        let mut builder = rayon::ThreadPoolBuilder::new().stack_size(8 << 20);
        if let Some(threads) = self.threads {
            builder = builder.num_threads(usize::from(threads));
        }
        let pool = builder.build().map_err(|e| anyhow::anyhow!("thread pool: {e}"))?;
        pool.install(work)
    }

    /// Puts the flags in force and runs `work` on this thread, for a command that is mostly serial (pruning a file):
    /// rayon's global pool is built only if a step is large enough to split, with `--threads` threads. Starting two
    /// workers up front and handing the work to one cost a LeNet prune 0.1-0.4 ms of its 3-4 ms.
    ///
    /// # Errors
    /// Whatever `work` returns.
    pub fn run_on_this_thread<T>(&self, work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        QUIET.store(self.quiet, Ordering::Relaxed);
        if let Some(threads) = self.threads {
            // Read by rayon when (if) it builds its global pool; no other thread exists yet.
            std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        }
        work()
    }
}

/// Whether `--quiet` is in force.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A note for the person at the terminal (what was written, what was upgraded), on stderr unless `--quiet`.
pub fn note(line: impl std::fmt::Display) {
    if !quiet() {
        eprintln!("{line}");
    }
}

/// A progress bar of `len` steps with the given indicatif template, hidden under `--quiet` (indicatif itself hides
/// it when stderr is not a terminal, so logs stay clean).
pub fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    if quiet() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// A flag given where it does not apply: reported as a usage error (exit code 2).
pub fn usage_error(message: impl std::fmt::Display) -> anyhow::Error {
    clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, message.to_string()).into()
}

/// An error and all its causes on one line, each cause once (a cause whose text the message already holds is left
/// out: I/O errors are often quoted by the error that wraps them).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line.replace('\n', " ")
}

/// Parses the process's arguments into `T`. Help and version go out as clap prints them; any other mistake is one
/// line, `TOOL: error: <what>; see TOOL --help`, with exit code 2 (clap's own message spans several lines and
/// repeats the usage).
pub fn parse_args<T: clap::Parser>(tool: &str) -> Result<T, ExitCode> {
    T::try_parse().map_err(|e| {
        use clap::error::ErrorKind;
        if matches!(
            e.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        eprintln!(
            "{tool}: error: {}; see {tool} --help",
            usage_line(&e.render().to_string())
        );
        ExitCode::from(2)
    })
}

/// clap's rendered error as one line: the message and its indented details, without the usage and the pointer to
/// --help that follow a blank line.
fn usage_line(rendered: &str) -> String {
    let message = rendered.split("\n\n").next().unwrap_or(rendered);
    let message = message.trim().strip_prefix("error:").unwrap_or(message).trim();
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The end of a tool's `main`: success, or `TOOL: error: <one line>` on stderr with exit code 2 for a usage error
/// and 1 for anything else.
pub fn finish(tool: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = one_line(e.as_ref());
            // clap's own text starts with "error: " and ends with a newline.
            let line = line.trim_end();
            eprintln!("{tool}: error: {}", line.strip_prefix("error: ").unwrap_or(line));
            if e.downcast_ref::<clap::Error>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Every layer's weights of a model file as the engine takes them, for any file generation (legacy 4-D shapes are
/// kept as such). Layers without blobs are listed too, as Caffe's `CopyTrainedLayersFrom` walks every source layer
/// (and reports those the net lacks).
pub fn engine_weights(net: &caffemodel::NetMessage<'_>) -> Vec<engine::LayerWeights> {
    net.layers()
        .iter()
        .map(|layer| engine::LayerWeights {
            name: layer.name().to_string(),
            blobs: layer
                .blobs()
                .iter()
                .map(|blob| {
                    let shape = blob.shape();
                    engine::WeightBlob {
                        shape: shape.dims,
                        legacy: shape.legacy,
                        data: blob.data().to_vec_f32(),
                    }
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.0, self.1)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn clap_errors_become_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  --distill <T>\n\nUsage: caffe-prune retrain --distill <T>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_line(rendered),
            "the following required arguments were not provided: --distill <T>"
        );
        assert_eq!(
            usage_line("error: unexpected argument '--x' found\n"),
            "unexpected argument '--x' found"
        );
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = Wrapped("/x.caffemodel", io);
        assert_eq!(one_line(&error), "/x.caffemodel: No such file or directory");
        let chained = anyhow::Error::new(std::io::Error::other("disk\nfull")).context("writing out.npz");
        assert_eq!(one_line(chained.as_ref()), "writing out.npz: disk full");
    }

    #[test]
    fn usage_errors_exit_2_and_failures_1() {
        assert_eq!(finish("t", Err(usage_error("--x does not apply"))), ExitCode::from(2));
        assert_eq!(
            one_line(usage_error("--x").as_ref()).trim_end(),
            "error: --x",
            "the prefix finish strips"
        );
        assert_eq!(finish("t", Err(anyhow::anyhow!("broken"))), ExitCode::FAILURE);
        assert_eq!(finish("t", Ok(())), ExitCode::SUCCESS);
    }
}
