//! `stack`: a misbehaving guest that recurses without end until its stack
//! overflows.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Stack;

#[inline(never)]
#[allow(unconditional_recursion)] // The point of this guest.
fn descend(depth: u64) -> u64 {
    // The frame holds data that survives the call, so the recursion can be
    // neither turned into a loop nor optimised away.
    let frame = std::hint::black_box([depth; 8]);
    descend(depth + 1).wrapping_add(frame[(depth % 8) as usize])
}

impl Guest for Stack {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        std::hint::black_box(descend(0));
    }
}

dwcp_guest::wasip2::http::proxy::export!(Stack);
