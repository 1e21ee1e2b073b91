//! Hypercall handler tests against synthetic guest memory and a recording platform.
