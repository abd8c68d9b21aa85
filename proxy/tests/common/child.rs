//! The real binary as a child process, and the value (its bound address) read from its stdout.

use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::oneshot;

/// A child process, killed and reaped on drop (so a failing test leaves no binary behind).
pub struct ChildGuard(pub Child);

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with stdout piped (stderr discarded) and waits up to `wait` for the first
/// stdout line `parse` accepts; panics if none comes. A thread keeps draining stdout after that
/// line, so the child never blocks on a full pipe.
pub async fn spawn_until_line<T: Send + 'static>(
    cmd: &mut Command,
    parse: impl Fn(&str) -> Option<T> + Send + 'static,
    wait: Duration,
) -> (ChildGuard, T) {
    let mut child = ChildGuard(cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Some(sender) = tx.take() else { continue };
            match parse(&line) {
                Some(value) => {
                    let _ = sender.send(value);
                }
                None => tx = Some(sender),
            }
        }
    });
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(value)) => (child, value),
        _ => panic!("no expected stdout line within {wait:?} from {cmd:?}"),
    }
}
