//! rustls' crypto for every HTTP client of the daemon (reqwest is built
//! without a provider of its own): ring, which builds for every target the
//! static binary is made for.

use std::sync::Once;

static INSTALL: Once = Once::new();

/// Installs ring as the process's default provider, once; call before
/// building an HTTP client.
pub fn init() {
    INSTALL.call_once(|| {
        // Err: a provider is installed already — one is all it takes.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
