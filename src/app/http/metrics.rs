//! `/metrics`: the hub's figures in the Prometheus (OpenMetrics) text format, encoded by
//! `prometheus-client`. A fresh registry is filled from the hub at each scrape, so series
//! exist only for what exists now. Cardinality is bounded: at most [`super::super::hub::MAX_TAPS`]
//! streams, and per-subscriber series for at most [`MAX_SUBSCRIBER_SERIES`] subscribers (the
//! most frames dropped first; the rest are counted in `framecast_subscriber_series_omitted`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::app::hub::Hub;

/// Most subscribers given their own series.
pub const MAX_SUBSCRIBER_SERIES: usize = 64;

type Labels = Vec<(&'static str, String)>;

fn gauge_family(r: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge<f64, AtomicU64>> {
    let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    r.register(name, help, f.clone());
    f
}

fn counter_family(r: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    r.register(name, help, f.clone());
    f
}

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    r.register(name, help, ConstCounter::new(v));
}

/// The exposition text.
pub fn render(hub: &Hub) -> String {
    let mut r = Registry::default();
    let v = hub.view();
    // Per stream: the figures under their own names.
    let fps = gauge_family(&mut r, "framecast_stream_fps", "Frames played per second");
    let mbit = gauge_family(
        &mut r,
        "framecast_stream_mbit_per_s",
        "Received bitrate, Mbit/s",
    );
    let viewers = gauge_family(
        &mut r,
        "framecast_stream_viewers",
        "framecast viewers of the stream",
    );
    let loss = gauge_family(
        &mut r,
        "framecast_stream_loss_percent",
        "Datagrams seen missing, percent of those expected",
    );
    let recovered = counter_family(
        &mut r,
        "framecast_stream_recovered",
        "Datagrams repaired by retransmission or parity",
    );
    let late = counter_family(
        &mut r,
        "framecast_stream_late",
        "Frames not whole by their playout time",
    );
    let frames = counter_family(
        &mut r,
        "framecast_stream_frames",
        "Frames received by the HTTP/RTP tap",
    );
    let http = gauge_family(
        &mut r,
        "framecast_http_clients",
        "HTTP MJPEG clients of the stream",
    );
    for (name, e) in v.streams() {
        let l: Labels = vec![("stream", name.clone())];
        fps.get_or_create(&l).set(e.figures.fps);
        mbit.get_or_create(&l).set(e.figures.mbit_per_s);
        viewers.get_or_create(&l).set(e.figures.viewers as f64);
        loss.get_or_create(&l).set(e.figures.loss_percent);
        recovered.get_or_create(&l).inc_by(e.figures.recovered);
        late.get_or_create(&l).inc_by(e.figures.late);
        frames.get_or_create(&l).inc_by(e.frames_total);
        http.get_or_create(&l).set(e.http_clients as f64);
    }
    // The relay as a whole.
    let s = &v.relay().relay;
    counter(
        &mut r,
        "framecast_relay_datagrams_in",
        "Datagrams received",
        s.datagrams_in,
    );
    counter(
        &mut r,
        "framecast_relay_datagrams_out",
        "Datagrams sent",
        s.datagrams_out,
    );
    counter(
        &mut r,
        "framecast_relay_bytes_in",
        "Bytes received",
        s.bytes_in,
    );
    counter(
        &mut r,
        "framecast_relay_bytes_out",
        "Bytes sent",
        s.bytes_out,
    );
    counter(
        &mut r,
        "framecast_relay_cache_hits",
        "Retransmission requests answered from the cache",
        s.cache_hits,
    );
    counter(
        &mut r,
        "framecast_relay_retransmits_sent",
        "Retransmissions sent to subscribers",
        s.retransmits_sent,
    );
    counter(
        &mut r,
        "framecast_relay_parity_sent",
        "Parity symbols sent",
        s.parity_sent,
    );
    counter(
        &mut r,
        "framecast_relay_queue_frames_dropped",
        "Whole frames dropped from slow subscribers' queues",
        s.queue_frames_dropped,
    );
    counter(
        &mut r,
        "framecast_relay_chunks_restored",
        "Chunks restored from the origin's parity",
        s.chunks_restored,
    );
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(v.relay().subscribers.len() as f64);
    r.register(
        "framecast_relay_subscribers",
        "framecast subscribers now (taps excluded)",
        g,
    );
    // Per subscriber, bounded.
    let queued = gauge_family(
        &mut r,
        "framecast_subscriber_queued_datagrams",
        "Datagrams queued for the subscriber",
    );
    let dropped = counter_family(
        &mut r,
        "framecast_subscriber_frames_dropped",
        "Whole frames dropped for the subscriber",
    );
    let played = gauge_family(
        &mut r,
        "framecast_subscriber_frames_played",
        "Frames played, from its last receiver report",
    );
    let mut subs: Vec<_> = v.relay().subscribers.iter().collect();
    subs.sort_by(|a, b| {
        b.frames_dropped
            .cmp(&a.frames_dropped)
            .then(a.addr.cmp(&b.addr))
    });
    for sub in subs.iter().take(MAX_SUBSCRIBER_SERIES) {
        let l: Labels = vec![
            ("stream", sub.stream.clone()),
            ("subscriber", sub.addr.clone()),
        ];
        queued.get_or_create(&l).set(sub.queued as f64);
        dropped.get_or_create(&l).inc_by(sub.frames_dropped);
        if let Some(p) = sub.frames_played {
            played.get_or_create(&l).set(f64::from(p));
        }
    }
    let omitted = Gauge::<f64, AtomicU64>::default();
    omitted.set(subs.len().saturating_sub(MAX_SUBSCRIBER_SERIES) as f64);
    r.register(
        "framecast_subscriber_series_omitted",
        "Subscribers without their own series (beyond the bound)",
        omitted,
    );
    drop(v);
    let mut out = String::new();
    let _ = encode(&mut out, &r);
    out
}

pub(super) async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&hub),
    )
        .into_response()
}
