//! Test kit: in-memory fakes of every port, the ports' conformance suites, a harness that starts
//! the local stack on free loopback ports, and data generators.
//!
//! The fakes are for unit tests of handlers; integration tests run the same handlers against
//! the real protocol servers the harness starts (moto, SeaweedFS).

pub mod conformance;
pub mod data;
pub mod events;
pub mod fakes;
pub mod harness;
pub mod http;
pub mod inventory_gen;
pub mod throttle_proxy;
