//! Storage faults injected in-process.
