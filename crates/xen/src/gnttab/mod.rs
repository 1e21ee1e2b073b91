//! Grant tables (placeholder while evtchn is built).
