//! `--http ADDR`: the relay's and the server's web side, on a thread of its own (axum on a
//! single-threaded tokio runtime), fed by the [`Hub`]; it never touches the datagram loop.
//!
//! - `/`: a self-contained page listing the streams, each with a live picture and its
//!   figures (no external scripts or fonts);
//! - `/STREAM.mjpg`: multipart MJPEG of the newest frames, the JPEGs unchanged. Each client
//!   reads the newest frame whenever its connection can take more, so a slow client gets
//!   fewer frames and nothing queues for it; at most `--http-max-clients` at once;
//! - `/STREAM.jpg`: the latest frame;
//! - `/stats.json`: the hub's figures; `/metrics`: the same in the Prometheus text format.

mod conn;
mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::hub::{Hub, LatestFrame};

pub use conn::STALL_TIMEOUT;

/// The multipart boundary of `/STREAM.mjpg`.
pub const BOUNDARY: &str = "framecastframe";
/// Connections beyond the MJPEG clients (page, JSON, metrics, snapshots).
const SPARE_CONNECTIONS: usize = 32;
/// How long `/STREAM.jpg` waits for a stream's first frame.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(3);

/// A running HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    shutdown: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (a busy port is reported here, before anything starts) and serves on a
    /// thread of its own. A client whose connection takes nothing for `stall` is cut off.
    pub fn start(addr: SocketAddr, hub: Arc<Hub>, stall: Duration) -> anyhow::Result<HttpServer> {
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!("--http {addr}: cannot listen there (port in use or address not on this host?)")
        })?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let shutdown = Arc::new(Notify::new());
        let stop = shutdown.clone();
        let max = hub.max_clients + SPARE_CONNECTIONS;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("--http: cannot start the HTTP runtime")?;
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = router(hub);
                    let serve =
                        axum::serve(conn::BoundedListener::new(l, max, stall), app).into_future();
                    let stopped = stop.notified();
                    futures_util::future::select(Box::pin(serve), Box::pin(stopped)).await;
                });
                // Open responses (a stalled client's, say) are dropped, not waited for.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .context("cannot start the HTTP thread")?;
        Ok(HttpServer {
            addr: local,
            shutdown,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/stats.json", get(stats_json))
        .route("/metrics", get(metrics::metrics))
        .route("/{file}", get(media))
        .with_state(hub)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

/// The newest-frame channel of `name`, starting a tap when the hub may (a pulling relay).
fn frames_of(hub: &Arc<Hub>, name: &str) -> Option<watch::Receiver<Option<LatestFrame>>> {
    if let Some(rx) = hub.with_stream(name, |e| e.frames.subscribe()) {
        return Some(rx);
    }
    if hub.on_demand && crate::proto::wire::valid_name(name) && hub.ensure_tap(name) {
        return hub.with_stream(name, |e| e.frames.subscribe());
    }
    None
}

async fn media(State(hub): State<Arc<Hub>>, Path(file): Path<String>) -> Response {
    if let Some(name) = file.strip_suffix(".mjpg") {
        mjpeg(hub, name)
    } else if let Some(name) = file.strip_suffix(".jpg") {
        snapshot(hub, name).await
    } else {
        not_found("not here: try /, /STREAM.mjpg, /STREAM.jpg, /stats.json or /metrics")
    }
}

async fn snapshot(hub: Arc<Hub>, name: &str) -> Response {
    let Some(mut rx) = frames_of(&hub, name) else {
        return not_found(&format!("no stream {name:?} here"));
    };
    let waited = tokio::time::timeout(FIRST_FRAME_WAIT, rx.wait_for(|f| f.is_some())).await;
    match waited {
        Ok(Ok(f)) => match f.clone() {
            Some(f) => (
                [
                    (header::CONTENT_TYPE, "image/jpeg"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                f.jpeg,
            )
                .into_response(),
            None => (StatusCode::SERVICE_UNAVAILABLE, "no frame yet\n").into_response(),
        },
        _ => (StatusCode::SERVICE_UNAVAILABLE, "no frame yet\n").into_response(),
    }
}

/// Holds one MJPEG client's slot; gives it back when the response ends or is dropped.
struct ClientSlot {
    hub: Arc<Hub>,
    stream: String,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.hub.clients.fetch_sub(1, Ordering::Relaxed);
        self.hub.with_stream(&self.stream, |e| {
            e.http_clients = e.http_clients.saturating_sub(1)
        });
    }
}

struct MjpegState {
    rx: watch::Receiver<Option<LatestFrame>>,
    jpeg: Option<Bytes>,
    first: bool,
    _slot: ClientSlot,
}

fn mjpeg(hub: Arc<Hub>, name: &str) -> Response {
    let Some(mut rx) = frames_of(&hub, name) else {
        return not_found(&format!("no stream {name:?} here"));
    };
    if hub.clients.fetch_add(1, Ordering::Relaxed) >= hub.max_clients {
        hub.clients.fetch_sub(1, Ordering::Relaxed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many MJPEG viewers ({} at most; see --http-max-clients)\n",
                hub.max_clients
            ),
        )
            .into_response();
    }
    hub.with_stream(name, |e| e.http_clients += 1);
    // The newest frame goes out at once, then each newer one the connection can take.
    if rx.borrow().is_some() {
        rx.mark_changed();
    }
    let state = MjpegState {
        rx,
        jpeg: None,
        first: true,
        _slot: ClientSlot {
            hub: hub.clone(),
            stream: name.to_string(),
        },
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(j) = st.jpeg.take() {
            return Some((Ok::<Bytes, Infallible>(j), st));
        }
        st.rx.changed().await.ok()?;
        let f = st.rx.borrow_and_update().clone()?;
        let head = format!(
            "{}--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame-Id: {}\r\n\r\n",
            if st.first { "" } else { "\r\n" },
            f.jpeg.len(),
            f.frame_id
        );
        st.first = false;
        st.jpeg = Some(f.jpeg);
        Some((Ok(Bytes::from(head)), st))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The hub's figures as JSON: per stream its description, figures (the names `play
/// --stats-json` uses under `figures`), HTTP clients and RTP counters; the relay's counters
/// and subscribers.
pub fn stats_value(hub: &Hub) -> serde_json::Value {
    let v = hub.view();
    let streams: Vec<serde_json::Value> = v
        .streams()
        .iter()
        .map(|(name, e)| {
            let d = e.description.as_ref();
            json!({
                "name": name,
                "width": d.map(|d| d.width),
                "height": d.map(|d| d.height),
                "frame_rate": d.map(|d| f64::from(d.fps_num) / f64::from(d.fps_den.max(1))),
                "audio": d.and_then(|d| d.audio).map(|a| json!({"sample_rate": a.sample_rate, "channels": a.channels})),
                "figures": e.figures,
                "frames": e.frames_total,
                "http_clients": e.http_clients,
                "rtp": e.rtp,
            })
        })
        .collect();
    json!({
        "role": hub.role,
        "streams": streams,
        "relay": v.relay().relay,
        "subscribers": v.relay().subscribers,
    })
}

async fn stats_json(State(hub): State<Arc<Hub>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(stats_value(&hub)),
    )
        .into_response()
}
