//! IP sets kept current from published feeds (`[[set]]` in the configuration):
//! parsed whole (`parse`), fetched with conditional requests (`fetch`), kept
//! in the state dir (`cache`) and refreshed on their own clock (`refresher`).

pub mod cache;
pub mod fetch;
pub mod parse;
pub mod refresher;
