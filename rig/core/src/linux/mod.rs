//! The generic Linux backends, for a rig on any Linux board (a Raspberry Pi included): the
//! terminal's link is a real interface (a USB Ethernet adapter, say) switched through netlink
//! ([`netlink_link`]), and its traffic is degraded by an nftables table the rig owns
//! ([`nftables`]). Both work in the rig's own network namespace or, when configured, in another
//! one ([`namespace`]).

pub mod namespace;
pub(crate) mod netlink;
pub mod netlink_link;
pub mod nftables;
