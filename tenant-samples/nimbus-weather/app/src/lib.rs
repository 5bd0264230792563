//! Nimbus Weather (tenant B) on mysimbdp: how its data becomes documents. [`observation`]
//! wrangles the hourly observations its stream app consumes, [`station`] the station reference
//! files its batch app ingests, [`units`] converts to SI units, and [`feed`] turns the sample
//! data into the messages its publisher sends. The binaries (`src/bin/`) are thin: the ingest
//! SDK does the platform's side.

pub mod feed;
pub mod observation;
pub mod station;
pub mod units;
