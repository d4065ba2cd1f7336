//! The admin socket of a stand-in server: tests that hold the database in
//! this process (a `Store` and its `Writer`, without the rest of the
//! server) serve the stream routes on `<dir>/admin.sock` with this, so that
//! `auditctl` reaches them as it reaches a running server.

use std::path::Path;
use std::sync::Arc;

use gatehouse::server::ops::admin_stream::{router, serve_connection};
use gatehouse::store::redb::RedbBackend;
use gatehouse::store::{Backend, Store, Writer};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The stream routes over a store, until [`AdminSocket::stop`].
pub struct AdminSocket {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminSocket {
    /// Serves the stream routes of `store` (written through `writer`) on
    /// `<dir>/admin.sock`, on the runtime of `rt`.
    pub fn serve(rt: &tokio::runtime::Handle, store: &Store, writer: &Writer, dir: &Path) -> Self {
        let _g = rt.enter();
        let backend = Backend::Redb(RedbBackend::new(store.clone(), writer.clone()));
        let (listener, path) = gatehouse::server::ops::admin::bind(dir).unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let task = rt.spawn(async move {
            let routes = router(backend);
            let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    r = listener.accept() => if let Ok((s, _)) = r {
                        conns.spawn(serve_connection(builder.clone(), s, routes.clone()));
                    },
                    _ = stopped.changed() => break,
                }
            }
            conns.abort_all();
            while conns.join_next().await.is_some() {}
            let _ = std::fs::remove_file(path);
        });
        AdminSocket { stop, task }
    }

    /// Stops serving and drops every handle on the store it held.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
