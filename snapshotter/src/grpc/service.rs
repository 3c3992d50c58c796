//! The `containerd.services.snapshots.v1.Snapshots` service over any [`Snapshotter`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use containerd_client::services::v1::snapshots as pb;
use futures_util::Stream;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use super::Empty;
use super::convert::{code, code_name, info_from_pb, info_to_pb, labels, mounts, parent, status};
use super::pb::snapshots_server::Snapshots;
use crate::metrics::Metrics;
use crate::snapshot::{Filters, SnapshotError, Snapshotter};

/// Infos per `List` response message, so large listings stream in pieces well below gRPC's
/// default 4 MiB message limit.
const LIST_BATCH: usize = 100;

/// The gRPC service: converts messages, calls the snapshotter, converts the result back.
#[derive(Debug)]
pub struct SnapshotsApi<S> {
    snapshotter: Arc<S>,
    metrics: Option<Arc<Metrics>>,
}

impl<S: Snapshotter> SnapshotsApi<S> {
    /// Serves `snapshotter`, counting calls in `metrics` when given.
    pub fn new(snapshotter: Arc<S>, metrics: Option<Arc<Metrics>>) -> Self {
        SnapshotsApi {
            snapshotter,
            metrics,
        }
    }

    /// Runs one call inside a span named after the operation, records its outcome, and turns
    /// a failure into the status containerd expects.
    async fn call<T>(
        &self,
        operation: &'static str,
        key: &str,
        work: impl Future<Output = Result<T, SnapshotError>>,
    ) -> Result<T, Status> {
        let span = tracing::info_span!("snapshots", operation, key);
        let started = Instant::now();
        let result = work.instrument(span.clone()).await;
        let elapsed = started.elapsed();
        let status_code = result.as_ref().map_or_else(code, |_| Code::Ok);
        if let Some(metrics) = &self.metrics {
            metrics.observe_operation(operation, code_name(status_code), elapsed);
        }
        let elapsed_ms = elapsed.as_millis() as u64;
        let _entered = span.enter();
        match result {
            Ok(value) => {
                tracing::debug!(elapsed_ms, "answered");
                Ok(value)
            }
            Err(error) => {
                // Returned to containerd, which logs it too; logged here with our context.
                match status_code {
                    Code::Internal => {
                        tracing::error!(elapsed_ms, error = %super::convert::error_chain(&error), "failed")
                    }
                    Code::Unavailable => {
                        tracing::warn!(elapsed_ms, error = %super::convert::error_chain(&error), "failed")
                    }
                    _ => {
                        tracing::debug!(elapsed_ms, %error, code = code_name(status_code), "rejected")
                    }
                }
                Err(status(&error))
            }
        }
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<pb::ListSnapshotsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: Snapshotter> Snapshots for SnapshotsApi<S> {
    async fn prepare(
        &self,
        request: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let request = request.into_inner();
        let key = request.key.clone();
        let work =
            self.snapshotter
                .prepare(request.key, parent(request.parent), labels(request.labels));
        let result = self.call("prepare", &key, work).await?;
        Ok(Response::new(pb::PrepareSnapshotResponse {
            mounts: mounts(result),
        }))
    }

    async fn view(
        &self,
        request: Request<pb::ViewSnapshotRequest>,
    ) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let request = request.into_inner();
        let key = request.key.clone();
        let work =
            self.snapshotter
                .view(request.key, parent(request.parent), labels(request.labels));
        let result = self.call("view", &key, work).await?;
        Ok(Response::new(pb::ViewSnapshotResponse {
            mounts: mounts(result),
        }))
    }

    async fn mounts(
        &self,
        request: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let key = request.into_inner().key;
        let result = self
            .call("mounts", &key, self.snapshotter.mounts(key.clone()))
            .await?;
        Ok(Response::new(pb::MountsResponse {
            mounts: mounts(result),
        }))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitSnapshotRequest>,
    ) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        let key = request.key.clone();
        let work = self
            .snapshotter
            .commit(request.name, request.key, labels(request.labels));
        self.call("commit", &key, work).await?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveSnapshotRequest>,
    ) -> Result<Response<Empty>, Status> {
        let key = request.into_inner().key;
        self.call("remove", &key, self.snapshotter.remove(key.clone()))
            .await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<pb::StatSnapshotRequest>,
    ) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let key = request.into_inner().key;
        let info = self
            .call("stat", &key, self.snapshotter.stat(key.clone()))
            .await?;
        Ok(Response::new(pb::StatSnapshotResponse {
            info: Some(info_to_pb(info)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateSnapshotRequest>,
    ) -> Result<Response<pb::UpdateSnapshotResponse>, Status> {
        let request = request.into_inner();
        let Some(info) = request.info else {
            return Err(Status::invalid_argument(
                "update request has no snapshot info",
            ));
        };
        let info = info_from_pb(info);
        let key = info.name.clone();
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let info = self
            .call("update", &key, self.snapshotter.update(info, paths))
            .await?;
        Ok(Response::new(pb::UpdateSnapshotResponse {
            info: Some(info_to_pb(info)),
        }))
    }

    type ListStream = ListStream;

    async fn list(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let filters = request.into_inner().filters;
        let key = filters.join(" | ");
        let snapshotter = Arc::clone(&self.snapshotter);
        let work = async move { snapshotter.walk(Filters::parse(&filters)?).await };
        let infos = self.call("list", &key, work).await?;
        let mut batches = Vec::with_capacity(infos.len().div_ceil(LIST_BATCH));
        let mut infos = infos.into_iter().map(info_to_pb).peekable();
        while infos.peek().is_some() {
            let info: Vec<pb::Info> = infos.by_ref().take(LIST_BATCH).collect();
            batches.push(Ok(pb::ListSnapshotsResponse { info }));
        }
        Ok(Response::new(Box::pin(futures_util::stream::iter(batches))))
    }

    async fn usage(
        &self,
        request: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let key = request.into_inner().key;
        let usage = self
            .call("usage", &key, self.snapshotter.usage(key.clone()))
            .await?;
        Ok(Response::new(pb::UsageResponse {
            size: usage.size,
            inodes: usage.inodes,
        }))
    }

    async fn cleanup(
        &self,
        _request: Request<pb::CleanupRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.call("cleanup", "", self.snapshotter.cleanup()).await?;
        Ok(Response::new(()))
    }
}
