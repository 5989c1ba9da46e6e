//! Alert JSON → [`crate::AlertDefinition`]. (Being written.)
