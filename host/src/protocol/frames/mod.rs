//! Frames on the link between host and worker: length-prefixed (tokio-util's
//! `LengthDelimitedCodec`, used synchronously), each holding one postcard-encoded message.

use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::platform::{LinkRead, LinkWrite};

fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame)
        .new_codec()
}

fn invalid(err: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, err.to_string())
}

/// What a reader's buffer starts with.
const INITIAL: usize = 8 << 10;

/// The most buffer a reader keeps between frames.
const RETAINED: usize = 256 << 10;

/// Reads whole messages from the link (or, in tests, any reader).
pub(crate) struct FrameReader<R = LinkRead> {
    stream: R,
    buffer: BytesMut,
    codec: LengthDelimitedCodec,
}

impl<R: Read> FrameReader<R> {
    /// Reads frames of at most `max_frame` bytes; a larger one is an error.
    pub(crate) fn new(stream: R, max_frame: usize) -> Self {
        Self {
            stream,
            buffer: BytesMut::with_capacity(INITIAL),
            codec: codec(max_frame),
        }
    }

    /// The next message; `None` at the end of the stream between two frames.
    ///
    /// # Errors
    ///
    /// A frame larger than the limit, a message that does not decode, the stream ending
    /// inside a frame, or the stream's own error.
    pub(crate) fn read<T: DeserializeOwned>(&mut self) -> std::io::Result<Option<T>> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buffer).map_err(invalid)? {
                return postcard::from_bytes(&frame).map(Some).map_err(invalid);
            }
            if self.buffer.is_empty() && self.buffer.capacity() > RETAINED {
                // A large frame read and gone: its buffer goes too, not kept for ever.
                self.buffer = BytesMut::with_capacity(INITIAL);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk)? {
                0 if self.buffer.is_empty() => return Ok(None),
                0 => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "the link ended inside a frame ({} bytes of it)",
                            self.buffer.len()
                        ),
                    ))
                }
                n => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Writes whole messages to the link (or, in tests, any writer); share it behind a
/// mutex.
pub(crate) struct FrameWriter<W = LinkWrite> {
    stream: W,
    buffer: BytesMut,
    codec: LengthDelimitedCodec,
}

impl<W: Write> FrameWriter<W> {
    /// Writes frames of at most `max_frame` bytes; a larger message is an error.
    pub(crate) fn new(stream: W, max_frame: usize) -> Self {
        Self {
            stream,
            buffer: BytesMut::with_capacity(INITIAL),
            codec: codec(max_frame),
        }
    }

    /// Sends one message, whole.
    pub(crate) fn write<T: Serialize>(&mut self, message: &T) -> std::io::Result<()> {
        let payload = postcard::to_stdvec(message).map_err(invalid)?;
        self.buffer.clear();
        self.codec
            .encode(Bytes::from(payload), &mut self.buffer)
            .map_err(invalid)?;
        self.stream.write_all(&self.buffer)
    }
}

impl FrameWriter {
    /// Closes the link for writing: the other side reads the end.
    pub(crate) fn shutdown(&mut self) {
        self.stream.close();
    }
}

#[cfg(test)]
mod tests;
