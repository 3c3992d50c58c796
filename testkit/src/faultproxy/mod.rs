//! A fault-injecting HTTP proxy between lazypull and a test registry, on 127.0.0.1.
//!
//! [`FaultProxy::start`] listens on a free port and forwards each request without a body
//! (GET and HEAD, which is all a lazy mount sends) to the registry, one upstream connection
//! per request. A [`FaultPlan`] decides per request whether a [`Fault`] is injected: by
//! [`Rule`] (path text, range requests only, every n-th match) or at random with a seed and
//! a rate. The plan is switched at run time through a [`FaultHandle`], which also counts the
//! faults injected per kind by [`Fault::name`]. A fault that does not apply to a request
//! (a body fault on an empty body, a range fault on a whole-blob GET) is neither injected
//! nor counted.
//!
//! Two optional behaviours of real registries are built in, set by [`ProxyOptions`]:
//!
//! - `token_auth`: the proxy requires a bearer token and serves the token endpoint itself
//!   (`/token`, anonymous). [`Fault::ExpireToken`] invalidates every token issued so far.
//! - `storage_redirect`: the proxy responds to blob GETs with 307 to a second listener, the
//!   "storage", with a URL that expires after `signed_url_ttl`, as object stores' signed
//!   URLs do. An expired URL gets 403.
//!
//! The proxy runs on its own tokio runtime, so synchronous tests can use it. Dropping the
//! [`FaultProxy`] stops it and ends stalled responses.

mod body;
mod fault;
mod service;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

pub use fault::{Fault, FaultPlan, Rule, Stall};
pub use state::FaultHandle;

use service::{Context, Role};

/// Optional registry behaviours of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    /// Require a bearer token from the proxy's own anonymous token endpoint.
    pub token_auth: bool,
    /// Redirect blob GETs to a second listener with signed URLs.
    pub storage_redirect: bool,
    /// Lifetime of a signed storage URL.
    pub signed_url_ttl: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            token_auth: false,
            storage_redirect: false,
            signed_url_ttl: Duration::from_secs(60),
        }
    }
}

/// A running fault proxy. Stopped on drop.
#[derive(Debug)]
pub struct FaultProxy {
    runtime: Option<tokio::runtime::Runtime>,
    handle: FaultHandle,
    port: u16,
    storage_port: Option<u16>,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 that forwards to the registry at
    /// `upstream` (`HOST:PORT`), with no fault planned.
    pub fn start(upstream: &str, options: ProxyOptions) -> anyhow::Result<FaultProxy> {
        let upstream: SocketAddr = upstream
            .parse()
            .with_context(|| format!("invalid upstream address {upstream:?}; expected IP:PORT"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .context("failed to start the fault proxy's runtime")?;
        let handle = FaultHandle::default();
        let (registry, storage) = runtime.block_on(async {
            let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let storage = if options.storage_redirect {
                Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
            } else {
                None
            };
            anyhow::Ok((registry, storage))
        })?;
        let port = registry.local_addr()?.port();
        let storage_port = match &storage {
            Some(listener) => Some(listener.local_addr()?.port()),
            None => None,
        };
        let ctx = Arc::new(Context {
            handle: handle.clone(),
            upstream,
            options,
            registry_port: port,
            storage_port,
        });
        runtime.spawn(accept_loop(registry, ctx.clone(), Role::Registry));
        if let Some(storage) = storage {
            runtime.spawn(accept_loop(storage, ctx, Role::Storage));
        }
        Ok(FaultProxy {
            runtime: Some(runtime),
            handle,
            port,
            storage_port,
        })
    }

    /// Returns the address, `127.0.0.1:PORT`, to use in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Returns the port of the storage listener, when blob redirects are on.
    pub fn storage_port(&self) -> Option<u16> {
        self.storage_port
    }

    /// Returns a handle that switches faults and reads counters.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// Replaces the fault plan; see [`FaultHandle::set_faults`].
    pub fn set_faults(&self, plan: FaultPlan) {
        self.handle.set_faults(plan);
    }

    /// Stops injecting faults; see [`FaultHandle::clear`].
    pub fn clear(&self) {
        self.handle.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, ctx: Arc<Context>, role: Role) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                eprintln!("fault proxy: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| service::handle(ctx.clone(), role, request));
            // A closed or reset connection ends here; that is the normal end of a fault.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
