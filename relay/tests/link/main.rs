//! Tests of the bus links on simulated time: a dialer [`relay::Link`] and an
//! acceptor [`relay::Inbound`] joined by a simulated TCP connection
//! ([`pair::Pair`]), plus scripted-IO tests of each side alone.

mod pair;

mod acceptor;
mod auth;
mod delivery;
mod errors;
mod liveness;
