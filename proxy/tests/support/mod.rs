//! Helpers shared by integration tests (`mod support;` in a test file). Not every test file uses
//! every helper, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod iggy_fixtures;
pub mod iggy_server;
