//! Tests of the checkpoint module across its parts.
