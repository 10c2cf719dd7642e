//! Helpers shared by integration tests (`mod support;` in a test file). Not every test file uses
//! every helper, hence the blanket `dead_code` allowance. The Iggy server itself comes from
//! `iggy_testkit`.
#![allow(dead_code)]

pub mod iggy_fixtures;
