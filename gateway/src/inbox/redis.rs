//! Redis inbox store (see mod docs).
