//! The control queue (VIRTIO 1.4 §5.1.9.5) and configuration changes.
//!
//! Each command is one chain: `class`, `command` and the command-specific
//! data in one device-readable descriptor, the `ack` byte in one
//! device-writable descriptor (preset to 0xff, so a device that never
//! writes it is noticed). One command is in flight at a time; the driver
//! waits (bounded) for it. Before issuing a command the driver checks the
//! feature it needs was negotiated (§5.1.9.5.1.2, §5.1.9.5.2.2 MUST NOTs):
//!
//! | command                                   | needs                           |
//! |-------------------------------------------|---------------------------------|
//! | `RX_PROMISC`, `RX_ALLMULTI`               | `CTRL_RX`                       |
//! | `RX_ALLUNI`, `NOMULTI`, `NOUNI`, `NOBCAST`| `CTRL_RX_EXTRA`                 |
//! | `MAC_TABLE_SET`                           | `CTRL_RX`                       |
//! | `MAC_ADDR_SET`                            | `CTRL_MAC_ADDR` and `CTRL_RX`   |
//! | `VLAN_ADD`, `VLAN_DEL`                    | `CTRL_VLAN`                     |
//! | `ANNOUNCE_ACK`                            | `GUEST_ANNOUNCE`                |
//! | `MQ_VQ_PAIRS_SET`                         | `MQ`                            |
//!
//! Values are the device's to judge (a VLAN id of 4096 or more, a group
//! address as the default address): the driver sends them and reports the
//! device's `ack`. It does check what the spec makes its own duty: MAC
//! table entries in the right table (§5.1.9.5.2.2) and `virtqueue_pairs`
//! in range (§5.1.9.5.6.1).
//!
//! Trust and panic contract: the `ack` is a device value, reported as is
//! when not `VIRTIO_NET_OK`; a used length that does not cover it is an
//! error (ignored on a legacy interface, §5.1.9.1). A command that times
//! out may still be used by the device: the controlq is then refused until
//! reset. Nothing here panics.

use alloc::vec::Vec;

use ringwork_queue::{Dma, Segment, UsedError};
use ringwork_spec::features::FeatureSet;
use ringwork_spec::net::ctrl::*;
use ringwork_spec::net::*;
use ringwork_transport::driver::{read_config_consistent, ConfigRead, InterruptCause, Transport};

use super::config::Duplex;
use super::error::CtrlError;
use super::NetDriver;
use crate::common::{kick, pop_or_arm, wait_for};

/// Bytes of the command buffer.
pub(crate) const CTRL_BUF_LEN: usize = 4096;
/// Where the `ack` byte goes in the command buffer.
const ACK_OFF: usize = CTRL_BUF_LEN - 64;
/// Most MAC addresses in both filter tables of one
/// `VIRTIO_NET_CTRL_MAC_TABLE_SET`.
pub const MAX_MAC_TABLE: usize = 512;

/// A receive filtering mode (`VIRTIO_NET_CTRL_RX`, §5.1.9.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RxMode {
    /// `VIRTIO_NET_CTRL_RX_PROMISC` (`CTRL_RX`).
    Promisc,
    /// `VIRTIO_NET_CTRL_RX_ALLMULTI` (`CTRL_RX`).
    AllMulti,
    /// `VIRTIO_NET_CTRL_RX_ALLUNI` (`CTRL_RX_EXTRA`).
    AllUni,
    /// `VIRTIO_NET_CTRL_RX_NOMULTI` (`CTRL_RX_EXTRA`).
    NoMulti,
    /// `VIRTIO_NET_CTRL_RX_NOUNI` (`CTRL_RX_EXTRA`).
    NoUni,
    /// `VIRTIO_NET_CTRL_RX_NOBCAST` (`CTRL_RX_EXTRA`).
    NoBcast,
}

impl RxMode {
    fn command(self) -> (u8, &'static str, u32) {
        match self {
            Self::Promisc => (
                VIRTIO_NET_CTRL_RX_PROMISC,
                "RX_PROMISC",
                VIRTIO_NET_F_CTRL_RX,
            ),
            Self::AllMulti => (
                VIRTIO_NET_CTRL_RX_ALLMULTI,
                "RX_ALLMULTI",
                VIRTIO_NET_F_CTRL_RX,
            ),
            Self::AllUni => (
                VIRTIO_NET_CTRL_RX_ALLUNI,
                "RX_ALLUNI",
                VIRTIO_NET_F_CTRL_RX_EXTRA,
            ),
            Self::NoMulti => (
                VIRTIO_NET_CTRL_RX_NOMULTI,
                "RX_NOMULTI",
                VIRTIO_NET_F_CTRL_RX_EXTRA,
            ),
            Self::NoUni => (
                VIRTIO_NET_CTRL_RX_NOUNI,
                "RX_NOUNI",
                VIRTIO_NET_F_CTRL_RX_EXTRA,
            ),
            Self::NoBcast => (
                VIRTIO_NET_CTRL_RX_NOBCAST,
                "RX_NOBCAST",
                VIRTIO_NET_F_CTRL_RX_EXTRA,
            ),
        }
    }
}

/// What [`NetDriver::config_changed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigUpdate {
    /// `VIRTIO_NET_S_LINK_UP` (always true without `VIRTIO_NET_F_STATUS`).
    pub link_up: bool,
    /// The link state differs from the previous read.
    pub link_changed: bool,
    /// The device asked for gratuitous packets (`VIRTIO_NET_S_ANNOUNCE`
    /// with `VIRTIO_NET_F_GUEST_ANNOUNCE`). The driver already sent
    /// `VIRTIO_NET_CTRL_ANNOUNCE_ACK`; the caller should now notify its
    /// peers of its location (§5.1.9.5.4.1 SHOULD), e.g. with a gratuitous
    /// ARP from [`NetDriver::mac`].
    pub announce: bool,
    /// `speed` (Mbit/s), re-read (§5.1.4.2 SHOULD).
    pub speed: Option<u32>,
    /// `duplex`, re-read.
    pub duplex: Duplex,
}

/// Whether `MAC_ADDR_SET` may be issued (`CTRL_MAC_ADDR`, and `CTRL_RX`
/// for the MAC class, §5.1.9.5.2.2).
pub(crate) fn can_set_mac(f: FeatureSet) -> bool {
    f.contains(VIRTIO_NET_F_CTRL_MAC_ADDR) && f.contains(VIRTIO_NET_F_CTRL_RX)
}

fn need(f: FeatureSet, command: &'static str, feature: u32) -> Result<(), CtrlError> {
    if f.contains(feature) {
        Ok(())
    } else {
        Err(CtrlError::NotNegotiated { command, feature })
    }
}

impl<T: Transport, D: Dma + Clone> NetDriver<T, D> {
    /// Sends one command and waits for its `ack`.
    fn command(&mut self, class: u8, command: u8, data: &[u8]) -> Result<(), CtrlError> {
        if self.ctrl_broken {
            return Err(CtrlError::Broken);
        }
        let len = NET_CTRL_HEADER_SIZE + data.len();
        if len > ACK_OFF {
            return Err(CtrlError::TooManyMacs {
                entries: data.len() / MAC_ADDR_LEN,
                max: MAX_MAC_TABLE,
            });
        }
        let Self {
            transport,
            state,
            irq,
            legacy,
            ctrl_broken,
            ..
        } = self;
        let st = &mut **state;
        let (Some(q), Some(buf)) = (st.ctrl.as_mut(), st.ctrl_buf.as_ref()) else {
            return Err(CtrlError::NoControlQueue);
        };
        let mem = buf.slice();
        let ok = mem.write_bytes(0, &[class, command]).is_ok()
            && mem.write_bytes(NET_CTRL_HEADER_SIZE, data).is_ok()
            && mem.write_u8(ACK_OFF, 0xff).is_ok();
        if !ok {
            return Err(CtrlError::Queue(UsedError::Broken));
        }
        let out = [Segment::new(buf.addr(0), len as u32)];
        let inp = [Segment::new(buf.addr(ACK_OFF), NET_CTRL_ACK_SIZE as u32)];
        q.add(&out, &inp, ())
            .map_err(|_| CtrlError::Queue(UsedError::Broken))?;
        kick(transport, q).map_err(CtrlError::Queue)?;
        let used = match wait_for(transport, irq, || pop_or_arm(q).map_err(CtrlError::Queue)) {
            Ok(u) => u,
            Err(e) => {
                if matches!(e, CtrlError::Timeout | CtrlError::NeedsReset) {
                    // The device may still write the ack.
                    *ctrl_broken = true;
                }
                return Err(e);
            }
        };
        if !*legacy && (used.len as usize) < NET_CTRL_ACK_SIZE {
            return Err(CtrlError::ShortAck { len: used.len });
        }
        let ack = mem
            .read_u8(ACK_OFF)
            .map_err(|e| CtrlError::Queue(UsedError::Memory(e)))?;
        if ack == VIRTIO_NET_OK {
            Ok(())
        } else {
            Err(CtrlError::Rejected {
                class,
                command,
                ack,
            })
        }
    }

    /// Turns a receive filtering mode on or off (§5.1.9.5.1).
    pub fn set_rx_mode(&mut self, mode: RxMode, on: bool) -> Result<(), CtrlError> {
        let (command, name, feature) = mode.command();
        need(self.features, name, feature)?;
        self.command(VIRTIO_NET_CTRL_RX, command, &[u8::from(on)])
    }

    /// Promiscuous mode on or off (`VIRTIO_NET_CTRL_RX_PROMISC`).
    pub fn set_promisc(&mut self, on: bool) -> Result<(), CtrlError> {
        self.set_rx_mode(RxMode::Promisc, on)
    }

    /// All-multicast receive on or off (`VIRTIO_NET_CTRL_RX_ALLMULTI`).
    pub fn set_allmulti(&mut self, on: bool) -> Result<(), CtrlError> {
        self.set_rx_mode(RxMode::AllMulti, on)
    }

    /// Sets the MAC filter table (`VIRTIO_NET_CTRL_MAC_TABLE_SET`,
    /// §5.1.9.5.2): `unicast` addresses (no group bit) then `multicast`
    /// ones (group bit set), either possibly empty; at most
    /// [`MAX_MAC_TABLE`] in all.
    pub fn set_mac_table(
        &mut self,
        unicast: &[[u8; 6]],
        multicast: &[[u8; 6]],
    ) -> Result<(), CtrlError> {
        need(self.features, "MAC_TABLE_SET", VIRTIO_NET_F_CTRL_RX)?;
        let entries = unicast.len() + multicast.len();
        if entries > MAX_MAC_TABLE {
            return Err(CtrlError::TooManyMacs {
                entries,
                max: MAX_MAC_TABLE,
            });
        }
        let misplaced = unicast
            .iter()
            .map(|m| m[0] & 1 != 0)
            .chain(multicast.iter().map(|m| m[0] & 1 == 0))
            .position(|wrong| wrong);
        if let Some(index) = misplaced {
            return Err(CtrlError::WrongTable { index });
        }
        let mut data = Vec::with_capacity(8 + 6 * entries);
        for table in [unicast, multicast] {
            data.extend_from_slice(&(table.len() as u32).to_le_bytes());
            for m in table {
                data.extend_from_slice(m);
            }
        }
        self.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, &data)
    }

    /// Sets the default address (`VIRTIO_NET_CTRL_MAC_ADDR_SET`); on
    /// success [`Self::mac`] returns it.
    pub fn set_mac(&mut self, mac: [u8; 6]) -> Result<(), CtrlError> {
        need(self.features, "MAC_ADDR_SET", VIRTIO_NET_F_CTRL_RX)?;
        need(self.features, "MAC_ADDR_SET", VIRTIO_NET_F_CTRL_MAC_ADDR)?;
        self.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, &mac)?;
        self.mac = mac;
        Ok(())
    }

    /// Adds `vid` to the VLAN filter (`VIRTIO_NET_CTRL_VLAN_ADD`,
    /// §5.1.9.5.3).
    pub fn vlan_add(&mut self, vid: u16) -> Result<(), CtrlError> {
        need(self.features, "VLAN_ADD", VIRTIO_NET_F_CTRL_VLAN)?;
        self.command(
            VIRTIO_NET_CTRL_VLAN,
            VIRTIO_NET_CTRL_VLAN_ADD,
            &vid.to_le_bytes(),
        )
    }

    /// Removes `vid` from the VLAN filter (`VIRTIO_NET_CTRL_VLAN_DEL`).
    pub fn vlan_del(&mut self, vid: u16) -> Result<(), CtrlError> {
        need(self.features, "VLAN_DEL", VIRTIO_NET_F_CTRL_VLAN)?;
        self.command(
            VIRTIO_NET_CTRL_VLAN,
            VIRTIO_NET_CTRL_VLAN_DEL,
            &vid.to_le_bytes(),
        )
    }

    /// Acknowledges an announce request (`VIRTIO_NET_CTRL_ANNOUNCE_ACK`,
    /// §5.1.9.5.4); [`Self::config_changed`] sends it by itself.
    pub fn announce_ack(&mut self) -> Result<(), CtrlError> {
        need(self.features, "ANNOUNCE_ACK", VIRTIO_NET_F_GUEST_ANNOUNCE)?;
        self.command(VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, &[])
    }

    /// Enables queue pairs `0..n` (`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`,
    /// §5.1.9.5.6): `n` from 1 to the pairs set up (which are at most
    /// `max_virtqueue_pairs`). While the command is in flight only
    /// `min(old, n)` pairs carry frames (§5.1.9.5.6.1: none beyond `n` once
    /// the command is available); if the device refuses, the old number
    /// stays.
    pub fn set_queue_pairs(&mut self, n: u16) -> Result<(), CtrlError> {
        need(self.features, "MQ_VQ_PAIRS_SET", VIRTIO_NET_F_MQ)?;
        let max = self.queue_pairs().min(self.config.max_virtqueue_pairs);
        if n == 0 || n > max {
            return Err(CtrlError::BadPairs { requested: n, max });
        }
        let old = self.active_pairs;
        self.active_pairs = old.min(n);
        let r = self.command(
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            &n.to_le_bytes(),
        );
        match &r {
            Ok(()) => self.active_pairs = n,
            Err(CtrlError::Rejected { .. }) => self.active_pairs = old,
            Err(_) => {}
        }
        r
    }

    /// Acknowledges the transport's interrupt and returns its cause; a
    /// configuration change is remembered for
    /// [`Self::config_change_pending`].
    pub fn interrupt(&mut self) -> InterruptCause {
        let cause = self.transport.ack_interrupt();
        if cause.config_changed {
            self.irq.config_changed = true;
        }
        cause
    }

    /// Whether a configuration change notification was seen (by
    /// [`Self::interrupt`] or during a blocking wait) and
    /// [`Self::config_changed`] has not run since.
    pub fn config_change_pending(&self) -> bool {
        self.irq.config_changed
    }

    /// Handles a configuration change: re-reads `status`, `speed` and
    /// `duplex` (§5.1.4.2), and when the device asks for an announcement
    /// (`VIRTIO_NET_S_ANNOUNCE` with `GUEST_ANNOUNCE`) sends
    /// `VIRTIO_NET_CTRL_ANNOUNCE_ACK` (§5.1.9.5.4.1 MUST), reporting
    /// [`ConfigUpdate::announce`] so the caller sends its gratuitous
    /// packets (deferred, as §5.1.9.5.4 allows).
    pub fn config_changed(&mut self) -> Result<ConfigUpdate, CtrlError> {
        self.irq.config_changed = false;
        let f = self.features;
        let (status, sd) = read_config_consistent(&mut self.transport, |t| {
            (
                f.contains(VIRTIO_NET_F_STATUS)
                    .then(|| t.config_u16(NET_CONFIG_STATUS_OFFSET)),
                f.contains(VIRTIO_NET_F_SPEED_DUPLEX).then(|| {
                    (
                        t.config_u32(NET_CONFIG_SPEED_OFFSET),
                        t.config_u8(NET_CONFIG_DUPLEX_OFFSET),
                    )
                }),
            )
        })?;
        let was_up = self.config.link_up();
        if let Some(s) = status {
            self.config.status = s;
        }
        if let Some((speed, duplex)) = sd {
            self.config.speed = speed_mbps(speed);
            self.config.duplex = Duplex::from_raw(duplex);
        }
        let announce = f.contains(VIRTIO_NET_F_GUEST_ANNOUNCE) && self.config.announce();
        if announce {
            self.announce_ack()?;
            self.config.status &= !VIRTIO_NET_S_ANNOUNCE;
        }
        Ok(ConfigUpdate {
            link_up: self.config.link_up(),
            link_changed: self.config.link_up() != was_up,
            announce,
            speed: self.config.speed,
            duplex: self.config.duplex,
        })
    }
}
