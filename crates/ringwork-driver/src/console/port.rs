//! Ports: what the driver knows about each (added, name, open states,
//! size) and its data queues. Input arrives in receive buffers of
//! [`RX_BUFFER_SIZE`] bytes, allocated the first time the port is added and
//! kept across removal and re-adding; a used buffer is held (unread input)
//! until `read` consumed it, then made available again. So input waiting
//! for the caller is bounded by the buffers, and a device cannot make the
//! driver allocate by sending.

use alloc::collections::VecDeque;
use alloc::string::String;

use ringwork_queue::{Dma, DriverQueue, Segment, UsedError};
use ringwork_transport::driver::Transport;

use super::error::{ConsoleError, ConsoleEvent};
use crate::common::{kick, pop_or_arm, DmaRegion};

/// Bytes per receive buffer.
pub const RX_BUFFER_SIZE: usize = 1024;

/// A console size (`cols`, `rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsoleSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// What the driver knows about a port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortInfo {
    /// The name the device gave it (`VIRTIO_CONSOLE_PORT_NAME`).
    pub name: Option<String>,
    /// Nominated as a console port (`VIRTIO_CONSOLE_CONSOLE_PORT`).
    pub console: bool,
    /// The host side is open (`VIRTIO_CONSOLE_PORT_OPEN` from the device).
    pub host_open: bool,
    /// The driver announced the port open (`VIRTIO_CONSOLE_PORT_OPEN` to
    /// the device).
    pub guest_open: bool,
    /// The last `VIRTIO_CONSOLE_RESIZE` for this port.
    pub size: Option<ConsoleSize>,
}

/// A used receive buffer not yet fully read.
#[derive(Debug, Clone, Copy)]
struct Input {
    slot: u16,
    len: u32,
    off: u32,
}

/// Driver-side state of one port.
#[derive(Debug, Default)]
pub(crate) struct Port {
    /// Added by the device (always, for the single port without
    /// MULTIPORT).
    pub added: bool,
    pub info: PortInfo,
    input: VecDeque<Input>,
}

impl Port {
    /// Forgets the port (removal): the caller reposts `pending_slots`.
    pub(crate) fn remove(&mut self) -> impl Iterator<Item = u16> + '_ {
        self.added = false;
        self.info = PortInfo::default();
        self.input.drain(..).map(|i| i.slot)
    }

    /// Whether unread input is waiting.
    pub(crate) fn has_input(&self) -> bool {
        !self.input.is_empty()
    }
}

/// A port's data queues and receive buffers.
pub(crate) struct PortQueues<D: Dma> {
    pub rx: DriverQueue<D, u16>,
    pub tx: DriverQueue<D, ()>,
    /// Receive buffers, allocated when the port is first added.
    pub rx_mem: Option<DmaRegion<D>>,
}

impl<D: Dma> PortQueues<D> {
    /// Makes receive buffer `slot` available again.
    pub(crate) fn post(&mut self, slot: u16) -> Result<(), ConsoleError> {
        let queue = self.rx.config().index;
        let Some(mem) = &self.rx_mem else {
            return Ok(());
        };
        let seg = Segment::new(
            mem.addr(usize::from(slot) * RX_BUFFER_SIZE),
            RX_BUFFER_SIZE as u32,
        );
        // §5.3.6.1: only device-writable buffers in a receiveq.
        self.rx.add(&[], &[seg], slot).map(|_| ()).map_err(|r| {
            let source = match r.error {
                ringwork_queue::AddError::Broken => UsedError::Broken,
                // Cannot happen: each slot is in the queue at most once.
                _ => UsedError::BadId { id: slot.into() },
            };
            ConsoleError::Queue { queue, source }
        })
    }

    /// Allocates (first time) and posts every receive buffer, then notifies
    /// the device if `notify`.
    pub(crate) fn fill<T: Transport + ?Sized>(
        &mut self,
        t: &mut T,
        dma: &D,
        buffers: u16,
        notify: bool,
    ) -> Result<(), ConsoleError>
    where
        D: Clone,
    {
        if self.rx_mem.is_some() {
            // Already posted (a re-added port): they are still there.
            return Ok(());
        }
        self.rx_mem = Some(DmaRegion::new(
            dma.clone(),
            usize::from(buffers) * RX_BUFFER_SIZE,
            64,
        )?);
        for slot in 0..buffers {
            self.post(slot)?;
        }
        if notify {
            self.kick(t)?;
        }
        Ok(())
    }

    /// Notifies the device about new receive buffers, if it wants that.
    pub(crate) fn kick<T: Transport + ?Sized>(&mut self, t: &mut T) -> Result<(), ConsoleError> {
        let queue = self.rx.config().index;
        kick(t, &mut self.rx).map_err(|source| ConsoleError::Queue { queue, source })
    }

    /// Takes used receive buffers: input for an added port is kept for
    /// `read` (and reported), anything else is reposted at once.
    pub(crate) fn take_input(
        &mut self,
        port_no: u32,
        port: &mut Port,
    ) -> Result<Option<ConsoleEvent>, ConsoleError> {
        let queue = self.rx.config().index;
        // Bounded: at most one used entry per posted buffer.
        for _ in 0..=self.rx.size() {
            let used =
                pop_or_arm(&mut self.rx).map_err(|source| ConsoleError::Queue { queue, source })?;
            let Some(used) = used else {
                return Ok(None);
            };
            if port.added && used.len > 0 {
                port.input.push_back(Input {
                    slot: used.token,
                    len: used.len,
                    off: 0,
                });
                return Ok(Some(ConsoleEvent::Data { port: port_no }));
            }
            self.post(used.token)?;
        }
        Ok(None)
    }

    /// Copies unread input into `buf`; reposts buffers it emptied. Returns
    /// the bytes copied and whether buffers were reposted.
    pub(crate) fn read(
        &mut self,
        port: &mut Port,
        buf: &mut [u8],
    ) -> (usize, Result<bool, ConsoleError>) {
        let mut n = 0;
        let mut reposted = false;
        while n < buf.len() {
            let Some(front) = port.input.front_mut() else {
                break;
            };
            // `len` was checked by the queue against RX_BUFFER_SIZE.
            let avail = (front.len.min(RX_BUFFER_SIZE as u32) - front.off.min(front.len)) as usize;
            let take = avail.min(buf.len() - n);
            let off = usize::from(front.slot) * RX_BUFFER_SIZE + front.off as usize;
            if let Some(mem) = &self.rx_mem {
                if mem.slice().read_bytes(off, &mut buf[n..n + take]).is_err() {
                    break;
                }
            }
            n += take;
            front.off += take as u32;
            if front.off >= front.len.min(RX_BUFFER_SIZE as u32) {
                let slot = front.slot;
                port.input.pop_front();
                if let Err(e) = self.post(slot) {
                    return (n, Err(e));
                }
                reposted = true;
            }
        }
        (n, Ok(reposted))
    }
}
