//! The kernel's verifier accepts the program.

use floodgate::loader::{Capacity, Floodgate};

#[test]
fn verifier_accepts_the_program() {
    let cap = Capacity::new(1024, 1024, 1024, 1024);
    let fg = Floodgate::load(cap, None);
    assert!(
        fg.is_ok(),
        "{:#}",
        fg.err()
            .map(anyhow::Error::from)
            .unwrap_or_else(|| anyhow::anyhow!("?"))
    );
}
