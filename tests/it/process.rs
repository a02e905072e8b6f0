//! The real binary: signals, exit codes, what it prints.
