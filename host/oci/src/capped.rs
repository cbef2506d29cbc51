//! A writer that stops at a size: what a registry sends is held to what its descriptor
//! said.

use std::{
    pin::Pin,
    task::{ready, Context, Poll},
};

use tokio::io::AsyncWrite;

/// A writer that refuses more than `left` bytes: a registry that sends more than a
/// descriptor says is cut off, not followed.
pub(crate) struct Capped<W> {
    pub(crate) inner: W,
    left: u64,
}

impl<W> Capped<W> {
    pub(crate) fn new(inner: W, limit: u64) -> Self {
        Self { inner, left: limit }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Capped<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            return Poll::Ready(Err(std::io::Error::other(
                "the blob is larger than its descriptor says",
            )));
        }
        let this = &mut *self;
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.left -= written as u64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The file at `path`, read up to `limit` bytes and one more: a caller that finds more
/// than `limit` refuses it without having read a file (or device) of any size whole.
pub(crate) fn read_at_most(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// As [`read_at_most`], with more than `limit` bytes an error naming the bound.
pub(crate) fn read_file_of_at_most(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let bytes = read_at_most(path, limit)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is larger than {limit} bytes, more than such a file can be"),
        ));
    }
    Ok(bytes)
}
