//! A setting replaced while the node runs (SIGHUP, `POST /reload`) and
//! read where it is used: the TLS certificate on each TLS accept, the admin
//! token on each admin request. Reads take a shared lock for the length of
//! a clone of an `Arc` or a comparison; a reload takes it exclusively once.
use std::sync::RwLock;

/// A value that a reload may replace.
#[derive(Debug, Default)]
pub struct Hot<T>(RwLock<T>);

impl<T> Hot<T> {
    /// Starts with `value`.
    pub fn new(value: T) -> Hot<T> {
        Hot(RwLock::new(value))
    }

    /// Runs `f` on the value in force.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts `value` in force; readers see it from their next read.
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

impl<T: Clone> Hot<T> {
    /// A copy of the value in force.
    pub fn get(&self) -> T {
        self.with(T::clone)
    }
}
