//! IPv4 CIDR blocks: parsing, containment and the stable subnet layout.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// An IPv4 CIDR block whose host bits are zero (`10.0.0.0/16`): ipnet's
/// `Ipv4Net`, parsed strictly (ipnet takes `10.0.0.1/16` as it is; a spec
/// with host bits set is a mistake worth naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(Ipv4Net);

/// Why a string is not a usable CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IPv4 CIDR block like 10.0.0.0/16")]
    Syntax(String),
    #[error("`{given}` has host bits set: the block starts at {network}")]
    HostBits { given: String, network: String },
}

impl Cidr {
    /// Builds a block; `None` when the prefix is over 32 or host bits are set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        Ipv4Net::new(addr, prefix)
            .ok()
            .filter(|n| n.network() == addr)
            .map(Cidr)
    }

    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.0.network()
    }

    /// Whether `other` lies entirely inside this block.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0)
    }

    /// Whether the block lies inside the RFC 1918 private ranges.
    pub fn is_private(&self) -> bool {
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
            .iter()
            .filter_map(|r| r.parse::<Ipv4Net>().ok())
            .any(|range| range.contains(&self.0))
    }

    /// The `index`-th block of prefix `self.prefix + extra_bits` inside this one.
    pub fn subnet(&self, extra_bits: u8, index: u32) -> Option<Cidr> {
        let prefix = self.prefix().checked_add(extra_bits)?;
        self.0
            .subnets(prefix)
            .ok()?
            .nth(usize::try_from(index).ok()?)
            .map(Cidr)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax(s.to_string());
        // Only `a.b.c.d/n`, n in one or two digits. The address goes through std's
        // parser, which refuses a leading zero (`010.…`, octal to some tools);
        // ipnet's own parser takes it.
        let (addr, prefix) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        let net = Ipv4Net::new(addr, prefix).map_err(|_| syntax())?;
        Cidr::new(addr, prefix).ok_or_else(|| CidrError::HostBits {
            given: s.to_string(),
            network: net.trunc().to_string(),
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The subnet layout is fixed so that adding an AZ never renumbers an existing
/// subnet: the VPC is cut in 16 equal blocks; public subnet `i` takes block `i`
/// and private subnet `i` takes block `8 + i` (room for the 6-AZ maximum).
pub const SUBNET_EXTRA_BITS: u8 = 4;
const PRIVATE_OFFSET: u32 = 8;
/// An ALB needs subnets of at least /27.
pub const LARGEST_SUBNET_PREFIX: u8 = 27;

pub fn public_subnet(vpc: &Cidr, az_index: usize) -> Option<Cidr> {
    vpc.subnet(SUBNET_EXTRA_BITS, u32::try_from(az_index).ok()?)
}

pub fn private_subnet(vpc: &Cidr, az_index: usize) -> Option<Cidr> {
    let index = u32::try_from(az_index).ok()?.checked_add(PRIVATE_OFFSET)?;
    vpc.subnet(SUBNET_EXTRA_BITS, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(c("10.0.0.0/16").to_string(), "10.0.0.0/16");
        assert_eq!(c("0.0.0.0/0").prefix(), 0);
        assert!(
            matches!("10.0.0.1/16".parse::<Cidr>(), Err(CidrError::HostBits { network, .. }) if network == "10.0.0.0/16")
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/16",
            "10.0.0.0/+1",
            "x/1",
            "10.0.0.0/016",
            // A leading zero reads as octal in some tools: std refuses it, so do we.
            "010.0.0.0/16",
            " 10.0.0.0/16",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn private_ranges() {
        assert!(c("10.20.0.0/16").is_private());
        assert!(c("172.31.0.0/16").is_private());
        assert!(!c("172.32.0.0/16").is_private());
        assert!(c("192.168.4.0/22").is_private());
        assert!(!c("8.8.0.0/16").is_private());
        assert!(!c("10.0.0.0/7").is_private());
    }

    #[test]
    fn layout_is_stable_and_disjoint() {
        let vpc = c("10.0.0.0/16");
        assert_eq!(public_subnet(&vpc, 0).unwrap().to_string(), "10.0.0.0/20");
        assert_eq!(public_subnet(&vpc, 1).unwrap().to_string(), "10.0.16.0/20");
        assert_eq!(
            private_subnet(&vpc, 0).unwrap().to_string(),
            "10.0.128.0/20"
        );
        assert_eq!(
            private_subnet(&vpc, 5).unwrap().to_string(),
            "10.0.208.0/20"
        );
        let mut all: Vec<Cidr> = (0..6)
            .flat_map(|i| {
                [
                    public_subnet(&vpc, i).unwrap(),
                    private_subnet(&vpc, i).unwrap(),
                ]
            })
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 12);
        assert!(all.iter().all(|s| vpc.contains(s)));
        assert!(public_subnet(&vpc, 16).is_none());
    }
}
