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

/// Reads whole messages from the link.
pub(crate) struct FrameReader {
    stream: LinkRead,
    buffer: BytesMut,
    codec: LengthDelimitedCodec,
}

impl FrameReader {
    /// Reads frames of at most `max_frame` bytes; a larger one is an error.
    pub(crate) fn new(stream: LinkRead, max_frame: usize) -> Self {
        Self {
            stream,
            buffer: BytesMut::with_capacity(8 * 1024),
            codec: codec(max_frame),
        }
    }

    /// The next message; `None` at end of stream.
    pub(crate) fn read<T: DeserializeOwned>(&mut self) -> std::io::Result<Option<T>> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buffer).map_err(invalid)? {
                return postcard::from_bytes(&frame).map(Some).map_err(invalid);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk)? {
                0 => return Ok(None),
                n => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Writes whole messages to the link; share it behind a mutex.
pub(crate) struct FrameWriter {
    stream: LinkWrite,
    buffer: BytesMut,
    codec: LengthDelimitedCodec,
}

impl FrameWriter {
    /// Writes frames of at most `max_frame` bytes; a larger message is an error.
    pub(crate) fn new(stream: LinkWrite, max_frame: usize) -> Self {
        Self {
            stream,
            buffer: BytesMut::with_capacity(8 * 1024),
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

    /// Closes the link for writing: the other side reads the end.
    pub(crate) fn shutdown(&mut self) {
        self.stream.close();
    }
}
