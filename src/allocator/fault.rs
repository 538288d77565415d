//! Misuse reports: a clear paragraph on stderr, then abort. Written with `write(2)` from a
//! stack buffer, because the heap may be what is broken.

use alloc::string::String;

/// Writes `text` to file descriptor `fd` with `write(2)`, retrying a partial write; false
/// when a closed or broken descriptor lost (some of) it.
pub fn write_all(fd: i32, mut text: &[u8]) -> bool {
    while !text.is_empty() {
        // SAFETY: `text` is valid for its length.
        let n = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
        if n <= 0 {
            return false;
        }
        text = &text[n as usize..];
    }
    true
}

/// Writes `text` to stderr (see [`write_all`]).
pub fn to_stderr(text: &[u8]) {
    write_all(2, text);
}

/// A `String` that formatting grows only as far as memory allows: a write for which no
/// memory can be had fails (`fmt::Error`) and leaves the text as it was, where `String`'s
/// own would abort the process. The crate's `format!` writes through it, so reports made
/// when memory is exhausted come out cut short, never as an abort (the statistics and the
/// walker run then: `pymalloc_check`).
#[derive(Default)]
pub struct Text(pub String);

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.try_reserve(s.len()).map_err(|_| core::fmt::Error)?;
        self.0.push_str(s);
        Ok(())
    }
}

/// A fixed-capacity text buffer on the stack.
pub struct Report {
    buf: [u8; 1024],
    len: usize,
}

impl Report {
    /// Starts a report whose first line names the fault.
    pub fn new(fault: &str) -> Self {
        let mut r = Report {
            buf: [0; 1024],
            len: 0,
        };
        r.text("pymalloc: ").text(fault).text("\n");
        r
    }

    /// Appends text.
    pub fn text(&mut self, s: &str) -> &mut Self {
        for b in s.bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    /// Appends a number in hexadecimal, `0x`-prefixed.
    pub fn hex(&mut self, v: usize) -> &mut Self {
        self.text("0x");
        let width = (usize::BITS - v.leading_zeros()).div_ceil(4).max(1);
        for shift in (0..width).rev() {
            let d = (v >> (shift * 4)) & 0xf;
            self.text(&"0123456789abcdef"[d..d + 1]);
        }
        self
    }

    /// Appends a number in decimal.
    pub fn dec(&mut self, mut v: usize) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.text(core::str::from_utf8(&digits[i..]).unwrap_or("?"))
    }

    /// Writes the report to stderr and aborts.
    pub fn abort(&mut self) -> ! {
        self.text("aborting\n");
        to_stderr(&self.buf[..self.len]);
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
}

/// Reports that `p` was freed twice in a row and aborts. Never returns for a non-null `p`
/// (the only kind passed); it is typed `()` rather than `!`, and returns for null, so that
/// the free fast path reaches it with a jump and needs no stack frame of its own: a call
/// that never returns is never made a tail call, and without the null test the compiler
/// would infer that it never returns.
#[cold]
#[inline(never)]
pub(crate) extern "C" fn double_free(p: *mut u8) {
    if p.is_null() {
        return;
    }
    Report::new("double free")
        .text("    address ")
        .hex(p as usize)
        .text(": this block is already the most recently freed block of its pool\n")
        .abort()
}

/// Reports that `p` was freed into a pool that holds no live block (freed twice, the
/// pool emptied and given back to its arena in between) and aborts.
#[cold]
#[inline(never)]
pub fn free_in_free_pool(p: *mut u8) -> ! {
    Report::new("double free")
        .text("    address ")
        .hex(p as usize)
        .text(": its pool holds no live block (freed already, or never allocated)\n")
        .abort()
}

/// Reports, in one line, that a thread asked for a lock of the allocator it already holds
/// (the allocator was entered from a signal handler that interrupted it), and aborts:
/// waiting would never end.
#[cold]
#[inline(never)]
pub fn reentered() -> ! {
    to_stderr(
        b"pymalloc: allocator re-entered while it holds a lock (allocation from a signal handler is not supported); aborting\n",
    );
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format() {
        let mut r = Report::new("x");
        r.hex(0)
            .text(" ")
            .hex(0x7f00_1234)
            .text(" ")
            .dec(0)
            .text(" ")
            .dec(4096);
        let text = core::str::from_utf8(&r.buf[..r.len]).unwrap();
        assert_eq!(text, "pymalloc: x\n0x0 0x7f001234 0 4096");
    }
}
