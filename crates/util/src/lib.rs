//! Small helpers every EdgeBench crate shares, each in one copy: content
//! hashes ([`hash`]), UTC time and the civil calendar ([`time`]), summary
//! statistics ([`stats`]).

pub mod hash;
pub mod stats;
pub mod time;
