//! placeholder

pub mod local;
