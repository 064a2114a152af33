//! The opening exchange of a session (vhost-user.rst, "Session
//! initialization"), shared by the first connection and reconnections.
//!
//! Trust and panic contract: replies are checked by [`Frontend`]; the
//! values are returned for the caller to judge. Nothing panics.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use super::{ConnectError, TransportOptions, WANTED_PROTOCOL_FEATURES};
use crate::frontend::Frontend;
use crate::msg::{self, protocol};

/// What the backend said in the opening exchange.
pub(super) struct Handshake {
    pub fe: Frontend,
    /// GET_FEATURES, vhost-user bits included.
    pub features: u64,
    /// Whether VHOST_USER_F_PROTOCOL_FEATURES was offered.
    pub has_pf: bool,
    pub protocol_offered: u64,
    /// Protocol features set (SET_PROTOCOL_FEATURES).
    pub protocol: u64,
    /// GET_QUEUE_NUM, with MQ.
    pub queue_num: Option<u64>,
    /// Our end of the backend channel, with BACKEND_REQ.
    pub channel: Option<UnixStream>,
}

impl Handshake {
    /// SET_OWNER, GET_FEATURES, protocol features (`want`, or the ones
    /// this frontend uses when offered), GET_QUEUE_NUM and the backend
    /// channel.
    pub fn run(
        sock: UnixStream,
        opts: &TransportOptions,
        want: Option<u64>,
    ) -> Result<Self, ConnectError> {
        sock.set_read_timeout(Some(opts.timeout))?;
        sock.set_write_timeout(Some(opts.timeout))?;
        let mut fe = Frontend::from_stream(sock);
        fe.set_owner()?;
        let features = fe.get_features()?;
        let has_pf = features & (1 << msg::F_PROTOCOL_FEATURES) != 0;
        let (mut protocol_offered, mut protocol) = (0, 0);
        if has_pf {
            protocol_offered = fe.get_protocol_features()?;
            protocol = match want {
                Some(w) => w & protocol_offered,
                None => protocol_offered & WANTED_PROTOCOL_FEATURES & !opts.withhold_protocol,
            };
            fe.set_protocol_features(protocol)?;
        }
        let queue_num = if protocol & (1 << protocol::MQ) != 0 {
            Some(fe.get_queue_num()?)
        } else {
            None
        };
        let mut channel = None;
        if protocol & (1 << protocol::BACKEND_REQ) != 0 {
            let (ours, theirs) = UnixStream::pair()?;
            ours.set_read_timeout(Some(opts.timeout))?;
            fe.set_backend_req_fd(theirs.as_fd())?;
            channel = Some(ours);
        }
        Ok(Self {
            fe,
            features,
            has_pf,
            protocol_offered,
            protocol,
            queue_num,
            channel,
        })
    }
}
