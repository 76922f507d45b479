//! Listening, connections and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use keye::Keye;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{ServeArgs, ServerConfig};
use crate::engine::{Engine, EngineLimits};
use crate::error::ServerError;
use crate::http::{AppState, router};
use crate::metrics::Metrics;

/// Connections get this long after the engine has stopped to send their last bytes.
const CONNECTION_DRAIN: Duration = Duration::from_secs(5);

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    router: Router,
}

impl Server {
    /// Starts the batching engine for `keye` and binds `address` (`host:port`; port 0 picks a
    /// free one). Must be called inside a Tokio runtime.
    pub async fn bind(
        keye: Arc<Keye>,
        config: ServerConfig,
        address: &str,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Bind {
                address: address.to_owned(),
                source,
            })?;
        let kv_token_budget = config.kv_token_budget(&keye);
        let metrics = Arc::new(Metrics::new(kv_token_budget, config.max_running));
        let engine = Engine::spawn(
            Arc::clone(&keye),
            Arc::clone(&metrics),
            EngineLimits {
                max_running: config.max_running,
                kv_token_budget,
            },
        )
        .map_err(|source| ServerError::Runtime {
            what: "batching engine thread",
            source,
        })?;
        let state = Arc::new(AppState::new(
            keye,
            config,
            engine,
            metrics,
            kv_token_budget,
        ));
        Ok(Self {
            router: router(Arc::clone(&state)),
            listener,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, refuses queued requests, lets
    /// running answers finish within the configured shutdown timeout (cancelling the rest) and
    /// returns once the engine has stopped.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Self {
            listener,
            state,
            router,
        } = self;
        let idle_timeout = state.config.idle_timeout;
        let (stop_connections, stopping) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(serve_connection(
                            stream,
                            router.clone(),
                            idle_timeout,
                            stopping.clone(),
                        ));
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        tracing::info!("shutting down");
        state.engine.begin_shutdown(state.config.shutdown_timeout);
        let _ = stop_connections.send(true);
        let engine_state = Arc::clone(&state);
        let engine_crashed = tokio::task::spawn_blocking(move || engine_state.engine.join())
            .await
            .unwrap_or(true);
        let drained = tokio::time::timeout(CONNECTION_DRAIN, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.shutdown().await;
        }
        if engine_crashed {
            return Err(ServerError::EngineCrashed);
        }
        Ok(())
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    idle_timeout: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    // Tokens are small writes that must leave at once.
    let _ = stream.set_nodelay(true);
    let mut builder = http1::Builder::new();
    // Covers both slow request headers and keep-alive connections idling between requests.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopping.wait_for(|&stop| stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// A server running on its own threads, for tests and embedding in synchronous programs.
pub struct ServerHandle {
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl ServerHandle {
    /// Serves `keye` on `127.0.0.1` at a free port.
    pub fn spawn(keye: Arc<Keye>, config: ServerConfig) -> Result<Self, ServerError> {
        Self::spawn_at(keye, config, "127.0.0.1:0")
    }

    pub fn spawn_at(
        keye: Arc<Keye>,
        config: ServerConfig,
        address: &str,
    ) -> Result<Self, ServerError> {
        let runtime = runtime()?;
        let server = runtime.block_on(Server::bind(keye, config, address))?;
        let address = server.local_addr();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("keye-server".into())
            .spawn(move || {
                runtime.block_on(server.run(async {
                    let _ = stop.await;
                }))
            })
            .map_err(|source| ServerError::Runtime {
                what: "server thread",
                source,
            })?;
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// `http://host:port`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Shuts down gracefully (see [`Server::run`]) and waits for the server to stop.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ServerError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ServerError::EngineCrashed),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keye-http")
        .build()
        .map_err(|source| ServerError::Runtime {
            what: "async runtime",
            source,
        })
}

/// `keye serve`: loads the model, listens, and serves until SIGTERM or Ctrl-C.
pub fn serve(args: ServeArgs) -> Result<(), ServerError> {
    let config = args.server_config()?;
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .map_err(|error| ServerError::Config {
                setting: "--threads",
                reason: error.to_string(),
            })?;
    }
    let keye = Keye::load(&args.model, &args.load_options()).map_err(ServerError::Load)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let server = Server::bind(Arc::new(keye), config.clone(), &args.address()).await?;
        eprintln!(
            "keye serve: {} on http://{} (chat page at /, API at /v1)",
            config.served_model_name,
            server.local_addr()
        );
        server.run(termination_signal()).await
    })
}

/// SIGTERM or Ctrl-C (SIGINT).
async fn termination_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
