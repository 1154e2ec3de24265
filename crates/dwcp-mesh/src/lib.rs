//! The edge cluster's decisions, pure: no I/O, no async, the clock and the
//! randomness passed in, so that every decision can be replayed in a test.
//!
//! - [`balance`]: which replica a forwarded request goes to: power of two
//!   choices on peak-EWMA latency × requests in flight, the request's own
//!   region first.
//! - [`cache`]: a node's HTTP response cache, shared by its apps' users:
//!   RFC 9111 shared-cache rules (freshness, `Vary`, revalidation by
//!   ETag/Last-Modified), an operator's default TTL, stateful apps cached
//!   only on request, bounded in bytes with least-recently-used eviction,
//!   purged by tenant, app or path.
//! - [`demand`]: where an app's requests enter, over a sliding window, and
//!   the replica moves that demand calls for (a region sending a fifth of
//!   the requests gets a replica within the app's budget; one whose demand
//!   has gone gives one up).
//! - [`membership`]: which nodes are alive (heard from within a bound),
//!   which take new work, and whose work must move (dead or draining).
//! - [`placement`]: which nodes hold an app's replicas: the same answer on
//!   every node from the same view, capacity aware, spread over regions or
//!   pinned, replicas in place left where they are, each decision explained.
//!
//! The node's cluster mode (membership and desired state on NATS
//! JetStream, forwarding over post-quantum TLS) builds on these; it is not
//! here yet.

pub mod balance;
pub mod cache;
pub mod demand;
pub mod membership;
pub mod placement;
