//! The rig's netlink plumbing, shared by every backend that switches interfaces: a worker thread
//! that keeps a netlink connection ready (in a chosen network namespace), and the few link
//! requests the rig makes (look up, read, set up or down).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkUnspec};
use tokio::sync::mpsc as async_mpsc;

use crate::linux::namespace;

/// How long [`run_netlink_job`] waits for its job.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// A job for the worker: given the connection's handle, a future that does the work and sends
/// its outcome back on its own.
type Job = Box<dyn FnOnce(Handle) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A thread with a current-thread runtime and a netlink connection opened in a given network
/// namespace, running jobs one at a time: each request costs one hop to the thread plus the
/// netlink round trips, and may be made from any thread, including from inside an async runtime.
/// Dropping the worker ends the thread once the job in progress is done.
#[derive(Debug)]
pub(crate) struct NetlinkWorker {
    jobs: Option<async_mpsc::UnboundedSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl NetlinkWorker {
    /// Starts the thread, entering the namespace at `namespace` first when given (a netlink
    /// socket belongs to the namespace its thread is in when it is opened).
    pub(crate) fn start(namespace: Option<PathBuf>) -> std::result::Result<NetlinkWorker, String> {
        let (jobs, mut queue) = async_mpsc::unbounded_channel::<Job>();
        let (ready_reporter, ready) = mpsc::sync_channel(1);
        let thread = thread::Builder::new()
            .name("posrig-netlink".to_string())
            .spawn(move || {
                if let Some(path) = &namespace {
                    if let Err(reason) = namespace::enter(path) {
                        let _ = ready_reporter.send(Err(reason));
                        return;
                    }
                }
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ =
                            ready_reporter.send(Err(format!("could not start a netlink runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (connection, handle, _) = match rtnetlink::new_connection() {
                        Ok(connection) => connection,
                        Err(error) => {
                            let _ =
                                ready_reporter.send(Err(format!("could not open a netlink socket: {error}")));
                            return;
                        }
                    };
                    let connection_task = tokio::spawn(connection);
                    let _ = ready_reporter.send(Ok(()));
                    while let Some(job) = queue.recv().await {
                        job(handle.clone()).await;
                    }
                    connection_task.abort();
                });
            })
            .map_err(|error| format!("could not start a netlink worker thread: {error}"))?;
        let worker = NetlinkWorker {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        match ready.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(reason)) => Err(reason),
            Err(mpsc::RecvError) => Err("the netlink worker thread stopped while starting".to_string()),
        }
    }

    /// Runs `job` on the worker and waits up to `timeout` for its outcome.
    pub(crate) fn call<T, JobFn, JobFuture>(
        &self,
        timeout: Duration,
        job: JobFn,
    ) -> std::result::Result<T, String>
    where
        T: Send + 'static,
        JobFn: FnOnce(Handle) -> JobFuture + Send + 'static,
        JobFuture: Future<Output = std::result::Result<T, String>> + 'static,
    {
        let stopped = || "the netlink worker thread has stopped".to_string();
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |handle| {
            Box::pin(async move {
                let _ = reply.send(job(handle).await);
            })
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        match answer.recv_timeout(timeout) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(format!("netlink did not answer within {} s", timeout.as_secs()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(stopped()),
        }
    }
}

impl Drop for NetlinkWorker {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// Runs one netlink job on a short-lived worker with its own connection, inside the namespace at
/// `namespace` when given. Safe to call from inside an async runtime.
pub(crate) fn run_netlink_job<T, JobFn, JobFuture>(
    namespace: Option<PathBuf>,
    job: JobFn,
) -> std::result::Result<T, String>
where
    T: Send + 'static,
    JobFn: FnOnce(Handle) -> JobFuture + Send + 'static,
    JobFuture: Future<Output = std::result::Result<T, String>> + 'static,
{
    NetlinkWorker::start(namespace)?.call(JOB_TIMEOUT, job)
}

/// Looks up a link by name; `None` when there is none.
pub(crate) async fn find_link(
    handle: &Handle,
    name: &str,
) -> std::result::Result<Option<LinkMessage>, rtnetlink::Error> {
    match handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Err(error) if is_errno(&error, libc::ENODEV) => Ok(None),
        other => other,
    }
}

/// Reads a link by index.
pub(crate) async fn get_link(
    handle: &Handle,
    index: u32,
) -> std::result::Result<LinkMessage, rtnetlink::Error> {
    handle
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await?
        .ok_or_else(|| rtnetlink::Error::NamespaceError(format!("the kernel returned no link {index}")))
}

/// The names of every link in the connection's namespace, in the kernel's order.
pub(crate) async fn link_names(handle: &Handle) -> std::result::Result<Vec<String>, rtnetlink::Error> {
    let links: Vec<LinkMessage> = handle.link().get().execute().try_collect().await?;
    Ok(links
        .iter()
        .filter_map(|link| link_name(link).map(str::to_string))
        .collect())
}

/// Sets a link administratively up or down (`ip link set DEV up|down`).
pub(crate) async fn set_link_up(
    handle: &Handle,
    index: u32,
    up: bool,
) -> std::result::Result<(), rtnetlink::Error> {
    let builder = LinkUnspec::new_with_index(index);
    let message = if up { builder.up() } else { builder.down() }.build();
    handle.link().change(message).execute().await
}

/// The link's interface name, when the kernel gave it.
pub(crate) fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// True when the kernel answered with this errno.
pub(crate) fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(message) if message.raw_code() == -errno)
}

/// "`doing`: what the kernel said", with a hint when the kernel refused for lack of privilege.
pub(crate) fn describe(doing: &str, error: &rtnetlink::Error) -> String {
    let said = match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io().to_string(),
        other => other.to_string(),
    };
    if is_errno(error, libc::EPERM) || is_errno(error, libc::EACCES) {
        format!(
            "{doing}: {said}; run the rig as root, or use the proxy link backend, which needs no privilege"
        )
    } else {
        format!("{doing}: {said}")
    }
}
