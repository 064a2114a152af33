//! The receive filter the driver programs through the control queue
//! (VIRTIO 1.4 §5.1.9.5.1 "Packet Receive Filtering", §5.1.9.5.2 "Setting
//! MAC Address Filtering", §5.1.9.5.3 "VLAN Filtering") and the decision
//! it makes for each incoming frame.
//!
//! Decision order (the filter is best-effort by the spec; this is QEMU's
//! order too): promiscuous mode takes everything; then, with
//! VIRTIO_NET_F_CTRL_VLAN, a tagged frame whose VLAN id is not in the
//! table is dropped; then broadcast passes unless NOBCAST; other multicast
//! passes unless NOMULTI, if ALLMULTI or listed in the multicast table;
//! unicast passes unless NOUNI, if it is the device's address, ALLUNI, or
//! listed in the unicast table. A table given more than [`MAC_TABLE_MAX`]
//! entries turns into "all of that kind" (allowed by the spec's footnote
//! on MAC filtering).
//!
//! After a reset the filter is promiscuous, as QEMU's is: a driver without
//! VIRTIO_NET_F_CTRL_RX cannot program it, and Linux sets its mode when the
//! interface comes up. The MAC table and the VLAN table start empty
//! (§5.1.9.5.2, §5.1.9.5.3).
//!
//! Panic contract: nothing here panics.

use super::packet::{MacAddr, Packet};

/// Addresses kept per MAC table; more switch the table to "all".
pub const MAC_TABLE_MAX: usize = 64;

/// The receive filter state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxFilter {
    /// The device's own (default) address.
    pub mac: MacAddr,
    /// Receive everything.
    pub promisc: bool,
    /// Receive all multicast.
    pub allmulti: bool,
    /// Receive all unicast.
    pub alluni: bool,
    /// Suppress multicast (not broadcast).
    pub nomulti: bool,
    /// Suppress unicast.
    pub nouni: bool,
    /// Suppress broadcast.
    pub nobcast: bool,
    /// Extra unicast addresses (VIRTIO_NET_CTRL_MAC_TABLE_SET).
    pub unicast: Vec<MacAddr>,
    /// The unicast table overflowed: accept all unicast.
    pub unicast_overflow: bool,
    /// Multicast addresses.
    pub multicast: Vec<MacAddr>,
    /// The multicast table overflowed: accept all multicast.
    pub multicast_overflow: bool,
    /// Whether VLAN filtering is on (VIRTIO_NET_F_CTRL_VLAN negotiated).
    pub vlan_filtering: bool,
    /// VLAN ids 0..4096 as a bitmap.
    pub vlans: Box<[u64; 64]>,
}

impl RxFilter {
    /// The state after a reset, for a device whose address is `mac`.
    pub fn new(mac: MacAddr) -> Self {
        Self {
            mac,
            promisc: true,
            allmulti: false,
            alluni: false,
            nomulti: false,
            nouni: false,
            nobcast: false,
            unicast: Vec::new(),
            unicast_overflow: false,
            multicast: Vec::new(),
            multicast_overflow: false,
            vlan_filtering: false,
            vlans: Box::new([0; 64]),
        }
    }

    /// Whether `vid` (0..4096) is in the VLAN table.
    pub fn has_vlan(&self, vid: u16) -> bool {
        let v = usize::from(vid & 0x0fff);
        self.vlans[v / 64] & (1 << (v % 64)) != 0
    }

    /// Adds or removes `vid` (0..4096) in the VLAN table.
    pub fn set_vlan(&mut self, vid: u16, on: bool) {
        let v = usize::from(vid & 0x0fff);
        if on {
            self.vlans[v / 64] |= 1 << (v % 64);
        } else {
            self.vlans[v / 64] &= !(1 << (v % 64));
        }
    }

    /// Replaces the MAC tables (overflowing ones become "all").
    pub fn set_tables(&mut self, unicast: Vec<MacAddr>, multicast: Vec<MacAddr>) {
        self.unicast_overflow = unicast.len() > MAC_TABLE_MAX;
        self.multicast_overflow = multicast.len() > MAC_TABLE_MAX;
        self.unicast = if self.unicast_overflow {
            Vec::new()
        } else {
            unicast
        };
        self.multicast = if self.multicast_overflow {
            Vec::new()
        } else {
            multicast
        };
    }

    /// Whether the device passes `packet` to the driver.
    pub fn accepts(&self, packet: &Packet) -> bool {
        if self.promisc {
            return true;
        }
        let Some(dst) = packet.dst() else {
            return false;
        };
        if self.vlan_filtering {
            if let Some(vid) = packet.vlan_id() {
                if !self.has_vlan(vid) {
                    return false;
                }
            }
        }
        if dst.is_broadcast() {
            return !self.nobcast;
        }
        if dst.is_multicast() {
            return !self.nomulti
                && (self.allmulti || self.multicast_overflow || self.multicast.contains(&dst));
        }
        !self.nouni
            && (dst == self.mac
                || self.alluni
                || self.unicast_overflow
                || self.unicast.contains(&dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(dst: [u8; 6]) -> Packet {
        let mut d = vec![0u8; 60];
        d[..6].copy_from_slice(&dst);
        Packet::new(d)
    }

    #[test]
    fn decisions() {
        let me = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
        let other = [0x52, 0x54, 0, 0, 0, 2];
        let mcast = [0x01, 0, 0x5e, 0, 0, 1];
        let mut f = RxFilter::new(me);
        assert!(f.accepts(&to(other)), "promiscuous after reset");
        f.promisc = false;
        assert!(f.accepts(&to(me.0)));
        assert!(!f.accepts(&to(other)));
        assert!(f.accepts(&to([0xff; 6])));
        assert!(!f.accepts(&to(mcast)));
        f.allmulti = true;
        assert!(f.accepts(&to(mcast)));
        f.nomulti = true;
        assert!(!f.accepts(&to(mcast)));
        assert!(f.accepts(&to([0xff; 6])), "NOMULTI spares broadcast");
        f.nobcast = true;
        assert!(!f.accepts(&to([0xff; 6])));
        f.set_tables(vec![MacAddr(other)], vec![]);
        assert!(f.accepts(&to(other)));
        f.nouni = true;
        assert!(!f.accepts(&to(me.0)));
        f.promisc = true;
        assert!(f.accepts(&to(me.0)), "promiscuous overrides NOUNI");
        f.set_tables(
            (0..65).map(|i| MacAddr([2, 0, 0, 0, 0, i])).collect(),
            vec![],
        );
        assert!(f.unicast_overflow && f.unicast.is_empty());
    }

    #[test]
    fn vlan_table() {
        let me = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
        let mut f = RxFilter::new(me);
        f.promisc = false;
        f.vlan_filtering = true;
        let mut d = vec![0u8; 60];
        d[..6].copy_from_slice(&me.0);
        d[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        let p = Packet::new(d);
        assert!(!f.accepts(&p));
        f.set_vlan(7, true);
        assert!(f.has_vlan(7) && f.accepts(&p));
        f.set_vlan(7, false);
        assert!(!f.accepts(&p));
        assert!(
            f.accepts(&to(me.0)),
            "untagged frames are not VLAN-filtered"
        );
    }
}
