//! Wall-clock helpers shared by the roles (the protocol core never reads a clock).

/// Microseconds since the Unix epoch (wall clock, for cross-process latency figures); 0 if
/// the system clock is set before 1970.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
