//! Serving the snapshots service on a Unix socket.

use std::future::Future;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use super::pb::snapshots_server::SnapshotsServer;
use super::service::SnapshotsApi;
use crate::metrics::Metrics;
use crate::snapshot::Snapshotter;

/// Why the gRPC server stopped.
#[derive(Debug, thiserror::Error)]
#[error("the snapshots gRPC server failed")]
pub struct ServeError(#[source] tonic::transport::Error);

/// Serves `snapshotter` on `listener` until `shutdown` completes, then lets calls in flight
/// finish and returns.
pub async fn serve<S: Snapshotter>(
    snapshotter: Arc<S>,
    listener: UnixListener,
    metrics: Option<Arc<Metrics>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let api = SnapshotsApi::new(snapshotter, metrics);
    tonic::transport::Server::builder()
        .add_service(SnapshotsServer::new(api))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(ServeError)
}
