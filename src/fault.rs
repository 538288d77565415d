//! Misuse reports: a clear message on stderr, then abort. Written with `write(2)` into a
//! stack buffer, because the heap may be what is broken.

/// A fixed-capacity text buffer on the stack.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        s.bytes().for_each(|b| self.byte(b));
        self
    }

    fn byte(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn hex(&mut self, v: usize) -> &mut Self {
        self.push("0x");
        let width = (usize::BITS - v.leading_zeros()).div_ceil(4).max(1);
        for shift in (0..width).rev() {
            self.byte(b"0123456789abcdef"[(v >> (shift * 4)) & 0xf]);
        }
        self
    }

    fn emit(&self) {
        // SAFETY: the buffer is valid for `len` bytes; fd 2 may be closed, which is fine.
        unsafe {
            libc::write(2, self.buf.as_ptr().cast(), self.len);
        }
    }
}

/// Reports that `p` was freed twice in a row and aborts. Never returns; it is typed `()`
/// rather than `!` so that the free fast path reaches it with a jump and needs no stack
/// frame of its own.
#[cold]
#[inline(never)]
pub extern "C" fn double_free(p: *mut u8) {
    let mut line = Line::new();
    line.push("pymalloc: double free of block ")
        .hex(p as usize)
        .push(" (it is already the most recently freed block of its pool)\n");
    line.emit();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
