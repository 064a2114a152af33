//! The control queue (VIRTIO 1.4 §5.1.9.5): each chain is `class`,
//! `command` and command-specific data (device-readable), then the `ack`
//! byte (device-writable). The device carries out the command, then writes
//! VIRTIO_NET_OK or VIRTIO_NET_ERR and completes the chain with used
//! length 1, so every state change is in place before the driver sees the
//! buffer used (§5.1.9.5.2.1, §5.1.9.5.4.2, §5.1.9.5.6.2).
//!
//! Commands: RX mode (PROMISC, ALLMULTI with VIRTIO_NET_F_CTRL_RX;
//! ALLUNI, NOMULTI, NOUNI, NOBCAST with VIRTIO_NET_F_CTRL_RX_EXTRA), MAC
//! TABLE_SET (CTRL_RX), MAC ADDR_SET (CTRL_MAC_ADDR), VLAN ADD/DEL
//! (CTRL_VLAN), ANNOUNCE ACK (GUEST_ANNOUNCE), MQ VQ_PAIRS_SET (MQ).
//!
//! Refused with VIRTIO_NET_ERR, state unchanged: a class or command whose
//! feature was not negotiated or that the device does not know; data of
//! the wrong length (the exact sizes of §5.1.9.5, trailing bytes too); an
//! on/off byte other than 0 or 1; MAC tables whose counts do not match the
//! data; a group address for ADDR_SET; a VLAN id of 4096 or more;
//! `virtqueue_pairs` of 0 or above `max_virtqueue_pairs`; a command longer
//! than [`CTRL_MAX`]. A chain with no writable byte for the ack is
//! completed with used length 0 and not carried out.
//!
//! Trust and panic contract: command bytes are copied into a private
//! buffer before they are parsed; nothing here panics.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ringwork_queue::device::DescChain;
use ringwork_spec::net::ctrl::*;
use ringwork_spec::net::*;

use super::device::{has, Shared};
use super::packet::MacAddr;
use super::stats::bump;
use crate::model::{DeviceError, QueueSet, QueueWorker};

/// Longest command (header and data) the device reads: room for two MAC
/// tables of 5000 addresses.
pub const CTRL_MAX: usize = 64 * 1024;

/// The controlq worker.
pub(super) struct CtrlWorker {
    shared: Arc<Shared>,
    features: u64,
    queue: u16,
    chain: DescChain,
    buf: Vec<u8>,
}

/// Why a command was refused (logged at debug level).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("shorter than the class and command bytes")]
    Short,
    #[error("feature bit {0} was not negotiated")]
    NotNegotiated(u32),
    #[error("unknown class {0} command {1}")]
    Unknown(u8, u8),
    #[error("{got} bytes of data, expected {want}")]
    Length { want: usize, got: usize },
    #[error("{0}")]
    Value(&'static str),
}

type Outcome = Result<(), Refused>;

fn exact(data: &[u8], want: usize) -> Outcome {
    if data.len() == want {
        Ok(())
    } else {
        Err(Refused::Length {
            want,
            got: data.len(),
        })
    }
}

fn on_off(data: &[u8]) -> Result<bool, Refused> {
    exact(data, 1)?;
    match data[0] {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Refused::Value("on/off byte other than 0 or 1")),
    }
}

fn macs(t: MacTable<'_>) -> Vec<MacAddr> {
    t.iter().map(MacAddr).collect()
}

impl CtrlWorker {
    pub(super) fn new(shared: Arc<Shared>, features: u64) -> Self {
        let pairs = queue_pairs(has(features, VIRTIO_NET_F_MQ), shared.opts.queue_pairs);
        Self {
            shared,
            features,
            queue: controlq_index(pairs) as u16,
            chain: DescChain::new(),
            buf: Vec::new(),
        }
    }

    fn need(&self, bit: u32) -> Outcome {
        if has(self.features, bit) {
            Ok(())
        } else {
            Err(Refused::NotNegotiated(bit))
        }
    }

    /// Carries out one command.
    fn execute(&self, cmd: &[u8]) -> Outcome {
        let hdr = NetCtrlHeader::new_checked(cmd).map_err(|_| Refused::Short)?;
        let (class, command) = (hdr.class(), hdr.command());
        let data = &cmd[NET_CTRL_HEADER_SIZE..];
        let sh = &self.shared;
        match (class, command) {
            (VIRTIO_NET_CTRL_RX, c @ VIRTIO_NET_CTRL_RX_PROMISC..=VIRTIO_NET_CTRL_RX_NOBCAST) => {
                self.need(if c <= VIRTIO_NET_CTRL_RX_ALLMULTI {
                    VIRTIO_NET_F_CTRL_RX
                } else {
                    VIRTIO_NET_F_CTRL_RX_EXTRA
                })?;
                let on = on_off(data)?;
                let mut st = sh.lock();
                let f = &mut st.filter;
                *match c {
                    VIRTIO_NET_CTRL_RX_PROMISC => &mut f.promisc,
                    VIRTIO_NET_CTRL_RX_ALLMULTI => &mut f.allmulti,
                    VIRTIO_NET_CTRL_RX_ALLUNI => &mut f.alluni,
                    VIRTIO_NET_CTRL_RX_NOMULTI => &mut f.nomulti,
                    VIRTIO_NET_CTRL_RX_NOUNI => &mut f.nouni,
                    _ => &mut f.nobcast,
                } = on;
                sh.filter_changed(&st);
                Ok(())
            }
            (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET) => {
                self.need(VIRTIO_NET_F_CTRL_RX)?;
                let (uc, mc) =
                    parse_mac_tables(data).map_err(|_| Refused::Value("MAC tables truncated"))?;
                exact(
                    data,
                    mac_table_len(uc.len() as u32) + mac_table_len(mc.len() as u32),
                )?;
                let mut st = sh.lock();
                st.filter.set_tables(macs(uc), macs(mc));
                sh.filter_changed(&st);
                Ok(())
            }
            (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET) => {
                self.need(VIRTIO_NET_F_CTRL_MAC_ADDR)?;
                exact(data, MAC_ADDR_LEN)?;
                let mut m = [0u8; MAC_ADDR_LEN];
                m.copy_from_slice(data);
                let mac = MacAddr(m);
                if mac.is_multicast() {
                    return Err(Refused::Value("group address as the default MAC"));
                }
                let mut st = sh.lock();
                st.mac = mac;
                st.filter.mac = mac;
                sh.filter_changed(&st);
                Ok(())
            }
            (VIRTIO_NET_CTRL_VLAN, c @ (VIRTIO_NET_CTRL_VLAN_ADD | VIRTIO_NET_CTRL_VLAN_DEL)) => {
                self.need(VIRTIO_NET_F_CTRL_VLAN)?;
                exact(data, 2)?;
                let vid = u16::from_le_bytes([data[0], data[1]]);
                if vid >= 4096 {
                    return Err(Refused::Value("VLAN id of 4096 or more"));
                }
                let mut st = sh.lock();
                st.filter.set_vlan(vid, c == VIRTIO_NET_CTRL_VLAN_ADD);
                sh.filter_changed(&st);
                Ok(())
            }
            (VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK) => {
                self.need(VIRTIO_NET_F_GUEST_ANNOUNCE)?;
                exact(data, 0)?;
                sh.lock().status &= !VIRTIO_NET_S_ANNOUNCE;
                Ok(())
            }
            (VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET) => {
                self.need(VIRTIO_NET_F_MQ)?;
                let p = NetCtrlMqPairsSet::new_checked(data)
                    .map_err(|_| Refused::Length {
                        want: NET_CTRL_MQ_PAIRS_SET_SIZE,
                        got: data.len(),
                    })?
                    .virtqueue_pairs();
                exact(data, NET_CTRL_MQ_PAIRS_SET_SIZE)?;
                if p < VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN || p > sh.opts.queue_pairs {
                    return Err(Refused::Value("virtqueue_pairs out of range"));
                }
                sh.ctrl_pairs.store(p, Ordering::Release);
                sh.update_pairs(&sh.lock());
                Ok(())
            }
            (class, command) => Err(Refused::Unknown(class, command)),
        }
    }
}

impl QueueWorker for CtrlWorker {
    fn process(&mut self, qs: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let Some(mut q) = qs.get(self.queue) else {
            return Ok(());
        };
        if q.queue().is_broken() {
            return Ok(());
        }
        let mem = q.mem();
        loop {
            while q.pop_into(&mut self.chain)? {
                let len = self.chain.readable_len() as usize;
                let mut w = self.chain.writer(mem);
                if w.remaining() == 0 {
                    tracing::debug!("virtio-net ctrl: no writable byte for the ack; ignored");
                    bump(&self.shared.stats.ctrl_err);
                    q.add_used(self.chain.token(), 0)?;
                    continue;
                }
                let outcome = if len > CTRL_MAX {
                    Err(Refused::Length {
                        want: CTRL_MAX,
                        got: len,
                    })
                } else {
                    self.buf.resize(len, 0);
                    match self.chain.reader(mem).read(&mut self.buf) {
                        Ok(n) => {
                            self.buf.truncate(n);
                            self.execute(&self.buf)
                        }
                        Err(e) => return Err(q.chain_error(e)),
                    }
                };
                let ack = match outcome {
                    Ok(()) => {
                        bump(&self.shared.stats.ctrl_ok);
                        VIRTIO_NET_OK
                    }
                    Err(why) => {
                        tracing::debug!("virtio-net ctrl: refused: {why}");
                        bump(&self.shared.stats.ctrl_err);
                        VIRTIO_NET_ERR
                    }
                };
                if let Err(e) = w.write(&[ack]) {
                    return Err(q.chain_error(e));
                }
                q.add_used(self.chain.token(), NET_CTRL_ACK_SIZE as u32)?;
            }
            if !q.enable_notification()? {
                break;
            }
        }
        q.signal()
    }
}
