//! Broker loss and reconnection.
