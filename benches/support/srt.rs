//! The SRT side of the loss sweep: a sender that paces chunked frames into
//! `srt-live-transmit`'s UDP input, and a receiver that times whole frames at its UDP output.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

pub(crate) fn now_us(origin: Instant) -> u64 {
    origin.elapsed().as_micros() as u64
}

/// Sends `frames` frames of `size` bytes at super::FPS from `first` on, each chunked and spread
/// over half a frame interval. Returns the number of frames sent.
pub(crate) fn srt_send(to: u16, size: usize, frames: u64, origin: Instant, first: Instant) -> u64 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let per = super::SRT_DATAGRAM - super::HEADER;
    let count = size.div_ceil(per);
    let mut buf = vec![0x5au8; super::SRT_DATAGRAM];
    let spread = Duration::from_secs_f64(0.5 / super::FPS) / count as u32;
    for k in 0..frames {
        let capture = first + Duration::from_secs_f64(k as f64 / super::FPS);
        let capture_us = capture.duration_since(origin).as_micros() as u64;
        for i in 0..count {
            let due = capture + spread * i as u32;
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            let len = super::HEADER + per.min(size - i * per);
            buf[0..4].copy_from_slice(&(k as u32).to_be_bytes());
            buf[4..6].copy_from_slice(&(i as u16).to_be_bytes());
            buf[6..8].copy_from_slice(&(count as u16).to_be_bytes());
            buf[8..16].copy_from_slice(&capture_us.to_be_bytes());
            let _ = sock.send_to(&buf[..len], ("127.0.0.1", to));
        }
    }
    frames
}

/// Receives until `until`; returns frame → capture→completion µs for complete frames.
pub(crate) fn srt_receive(sock: UdpSocket, origin: Instant, until: Instant) -> HashMap<u64, f64> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut parts: HashMap<u32, (Vec<bool>, usize)> = HashMap::new();
    let mut done = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let at = now_us(origin);
        if n < super::HEADER {
            continue;
        }
        let k = u32::from_be_bytes(buf[0..4].try_into().unwrap());
        let i = u16::from_be_bytes(buf[4..6].try_into().unwrap()) as usize;
        let count = u16::from_be_bytes(buf[6..8].try_into().unwrap()) as usize;
        let capture = u64::from_be_bytes(buf[8..16].try_into().unwrap());
        let (seen, got) = parts.entry(k).or_insert_with(|| (vec![false; count], 0));
        if i < seen.len() && !seen[i] {
            seen[i] = true;
            *got += 1;
            if *got == seen.len() {
                done.insert(u64::from(k), at as f64 - capture as f64);
            }
        }
    }
    done
}
