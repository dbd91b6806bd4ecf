//! Idle HTTP/1 connections to targets, keyed by the resolved address and the host they were opened for, so a
//! request reuses a connection only to the exact address its own SSRF check approved.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::client::conn::http1::SendRequest;

use crate::reply::Body;

/// At most this many idle connections per key.
const MAX_IDLE: usize = 32;

type Key = (SocketAddr, String);

/// A pool of idle target connections. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pool {
    idle: Arc<Mutex<HashMap<Key, Vec<SendRequest<Body>>>>>,
}

impl Pool {
    /// An idle, ready connection for `key`, if any (closed ones are dropped).
    pub(crate) fn take(&self, addr: SocketAddr, host: &str) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&(addr, host.to_owned()))?;
        while let Some(sender) = list.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// Returns a connection that is ready now (taken but not used) for reuse.
    pub(crate) fn put(&self, addr: SocketAddr, host: String, sender: SendRequest<Body>) {
        if !sender.is_ready() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry((addr, host)).or_default();
            if list.len() < MAX_IDLE {
                list.push(sender);
            }
        }
    }

    /// Returns a connection for reuse once it is ready again (its last response body fully read).
    pub(crate) async fn give_back(
        &self,
        addr: SocketAddr,
        host: String,
        mut sender: SendRequest<Body>,
    ) {
        if sender.ready().await.is_err() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry((addr, host)).or_default();
            if list.len() < MAX_IDLE {
                list.push(sender);
            }
        }
    }
}
