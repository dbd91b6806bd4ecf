//! Keep-alive HTTP/1 connections to targets, keyed by the resolved address and the host they were opened for, so a
//! request reuses a connection only to the exact address its own SSRF check approved.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::client::conn::http1::SendRequest;

use crate::reply::Body;

/// At most this many kept connections per key.
const MAX_IDLE: usize = 32;

type Key = (SocketAddr, String);

/// A pool of kept target connections. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pool {
    idle: Arc<Mutex<HashMap<Key, Vec<SendRequest<Body>>>>>,
}

impl Pool {
    /// A ready connection for `key`, if any. Closed connections are dropped; connections still busy with their
    /// last response (its body not yet read to the end) stay for later.
    pub(crate) fn take(&self, addr: SocketAddr, host: &str) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&(addr, host.to_owned()))?;
        list.retain(|s| !s.is_closed());
        let i = list.iter().rposition(SendRequest::is_ready)?;
        Some(list.swap_remove(i))
    }

    /// Keeps a connection for reuse: at once, even while its response is still being streamed (it becomes ready
    /// when the body has been read, and [`Pool::take`] hands out only ready ones), so no task has to wait for it.
    pub(crate) fn put(&self, addr: SocketAddr, host: String, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry((addr, host)).or_default();
            if list.len() >= MAX_IDLE {
                list.retain(|s| !s.is_closed());
            }
            if list.len() < MAX_IDLE {
                list.push(sender);
            }
        }
    }
}
