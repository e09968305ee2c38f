//! The topology the tests and the demo share.

use anyhow::Result;

use super::{Lab, Link, Ns};

/// The topology the integration tests and the demo share: namespaces `edge`,
/// `crawl` and `user`; edge ⟷ crawler on 198.18.1.0/24 (the crawler has .2 and
/// .3), edge ⟷ user on 198.18.2.0/24 (user .2). floodgate goes on the edge ends.
pub struct EdgeNet {
    pub edge: Ns,
    pub crawler: Ns,
    pub user: Ns,
    pub to_crawler: Link,
    pub to_user: Link,
}

impl EdgeNet {
    pub fn build(lab: &mut Lab) -> Result<EdgeNet> {
        let edge = lab.add_ns("edge")?;
        let crawler = lab.add_ns("crawl")?;
        let user = lab.add_ns("user")?;
        let to_crawler = lab.link(&edge, &["198.18.1.1/24"], &crawler, &["198.18.1.2/24"])?;
        crawler.add_addr(&to_crawler.b_if, "198.18.1.3/24")?;
        edge.ip(&[
            "neigh",
            "replace",
            "198.18.1.3",
            "lladdr",
            &to_crawler.b_mac,
            "nud",
            "permanent",
            "dev",
            &to_crawler.a_if,
        ])?;
        let to_user = lab.link(&edge, &["198.18.2.1/24"], &user, &["198.18.2.2/24"])?;
        Ok(EdgeNet {
            edge,
            crawler,
            user,
            to_crawler,
            to_user,
        })
    }

    /// The edge-side interfaces floodgate attaches to.
    pub fn edge_ifaces(&self) -> [String; 2] {
        [self.to_crawler.a_if.clone(), self.to_user.a_if.clone()]
    }
}
