//! Frames on the link between host and worker: length-prefixed (a 4-byte big-endian
//! length), each holding one postcard-encoded message.
//!
//! A message of `share_from` bytes or more does not travel on the link where the platform
//! has shared memory (see `platform::shared`): a frame of length 0 (no message encodes to
//! nothing) says "the next message is in the sealed region handed over beside me", and
//! the region holds the message's bytes. The same limit applies to both kinds.

use std::io::{Read, Write};

use serde::{de::DeserializeOwned, Serialize};

use crate::platform::{share, LinkRead, LinkWrite, MappedRegion, SealedRegion};

fn invalid(err: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, err.to_string())
}

/// The bytes of a frame's length.
const HEADER: usize = 4;

/// The frame that announces a region: a length of 0.
const REGION_FRAME: [u8; HEADER] = [0; HEADER];

/// What a reader's buffer starts with, and the least it reads at once.
const INITIAL: usize = 16 << 10;

/// The most buffer a reader or writer keeps between frames: frames up to it need no new
/// memory (whose first touch of each page costs more than copying it).
const RETAINED: usize = 2 << 20;

/// A stream frames are read from, and the regions beside it.
pub(crate) trait FrameSource: Read {
    /// The region that came with the frame just read, mapped, of 1 to `max` bytes.
    fn take_region(&mut self, max: usize) -> std::io::Result<MappedRegion>;
}

/// A stream frames are written to, and regions beside it.
pub(crate) trait FrameSink: Write {
    /// Writes `bytes` with `region` beside them.
    fn write_with_region(&mut self, bytes: &[u8], region: SealedRegion) -> std::io::Result<()>;
}

impl FrameSource for LinkRead {
    fn take_region(&mut self, max: usize) -> std::io::Result<MappedRegion> {
        LinkRead::take_region(self, max)
    }
}

impl FrameSink for LinkWrite {
    fn write_with_region(&mut self, bytes: &[u8], region: SealedRegion) -> std::io::Result<()> {
        LinkWrite::write_with_region(self, bytes, region)
    }
}

/// In tests and fuzzing: bytes alone, no regions beside them.
impl FrameSource for &[u8] {
    fn take_region(&mut self, _max: usize) -> std::io::Result<MappedRegion> {
        Err(invalid(
            "a frame announced a region on a stream of bytes alone",
        ))
    }
}

/// In tests: bytes alone, no regions beside them.
#[cfg(test)]
impl FrameSink for Vec<u8> {
    fn write_with_region(&mut self, _bytes: &[u8], _region: SealedRegion) -> std::io::Result<()> {
        Err(invalid("a region written to a stream of bytes alone"))
    }
}

/// Reads whole messages from the link (or, in tests, any reader).
pub(crate) struct FrameReader<R = LinkRead> {
    stream: R,
    /// Bytes read; `buffer[start..end]` are not decoded yet. Its length is its zeroed
    /// capacity, kept between frames so that reads need neither allocation nor zeroing.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: usize,
}

impl<R: FrameSource> FrameReader<R> {
    /// Reads frames of at most `max_frame` bytes; a larger one is an error.
    pub(crate) fn new(stream: R, max_frame: usize) -> Self {
        Self {
            stream,
            buffer: vec![0; INITIAL],
            start: 0,
            end: 0,
            max_frame,
        }
    }

    /// The next message; `None` at the end of the stream between two frames.
    ///
    /// # Errors
    ///
    /// A frame larger than the limit, a message that does not decode, a region missing or
    /// not sealed memory, the stream ending inside a frame, or the stream's own error.
    pub(crate) fn read<T: DeserializeOwned>(&mut self) -> std::io::Result<Option<T>> {
        loop {
            let pending = &self.buffer[self.start..self.end];
            if let Some(header) = pending.first_chunk::<HEADER>() {
                let length = u32::from_be_bytes(*header) as usize;
                if length > self.max_frame {
                    return Err(invalid(format!(
                        "a frame of {length} bytes is larger than a frame may be ({} bytes)",
                        self.max_frame
                    )));
                }
                if let Some(frame) = pending.get(HEADER..HEADER + length) {
                    self.start += HEADER + length;
                    if length == 0 {
                        let region = self.stream.take_region(self.max_frame)?;
                        return postcard::from_bytes(&region).map(Some).map_err(invalid);
                    }
                    return postcard::from_bytes(frame).map(Some).map_err(invalid);
                }
                self.make_room(HEADER + length);
            } else {
                self.make_room(HEADER);
            }
            match self.stream.read(&mut self.buffer[self.end..])? {
                0 if self.start == self.end => return Ok(None),
                0 => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "the link ended inside a frame ({} bytes of it)",
                            self.end - self.start
                        ),
                    ))
                }
                n => self.end += n,
            }
        }
    }

    /// Room after what is pending for a frame of `frame` bytes in all (header included),
    /// and for a read of at least the least at once.
    fn make_room(&mut self, frame: usize) {
        let pending = self.end - self.start;
        if self.start > 0 {
            // What is decoded goes; what is pending moves to the front.
            self.buffer.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, pending);
        }
        if pending == 0 && self.buffer.len() > RETAINED {
            // A large frame read and gone: its buffer goes too, not kept for ever.
            self.buffer = vec![0; INITIAL];
        }
        let wanted = frame.max(pending + INITIAL);
        if self.buffer.len() < wanted {
            self.buffer.resize(wanted, 0);
        }
    }
}

/// Writes whole messages to the link (or, in tests, any writer); share it behind a
/// mutex.
pub(crate) struct FrameWriter<W = LinkWrite> {
    stream: W,
    buffer: Vec<u8>,
    max_frame: usize,
    share_from: usize,
}

impl<W: FrameSink> FrameWriter<W> {
    /// Writes frames of at most `max_frame` bytes, all on the stream; a larger message is
    /// an error.
    pub(crate) fn new(stream: W, max_frame: usize) -> Self {
        Self {
            stream,
            buffer: Vec::with_capacity(INITIAL),
            max_frame,
            share_from: usize::MAX,
        }
    }

    /// Messages of `bytes` or more travel in shared memory where the platform has it (0:
    /// none does).
    #[must_use]
    pub(crate) fn sharing_from(mut self, bytes: usize) -> Self {
        self.share_from = if bytes == 0 { usize::MAX } else { bytes };
        self
    }

    /// Sends one message, whole.
    pub(crate) fn write<T: Serialize>(&mut self, message: &T) -> std::io::Result<()> {
        let size = postcard::serialize_with_flavor(message, postcard::ser_flavors::Size::default())
            .map_err(invalid)?;
        if size > self.max_frame {
            return Err(invalid(format!(
                "a message of {size} bytes is larger than a frame may be ({} bytes)",
                self.max_frame
            )));
        }
        let encode = |into: &mut [u8]| postcard::to_slice(message, into).map(drop).map_err(invalid);
        if size >= self.share_from {
            if let Some(region) = share(size, encode)? {
                return self.stream.write_with_region(&REGION_FRAME, region);
            }
        }
        let length = u32::try_from(size).map_err(invalid)?;
        self.buffer.clear();
        self.buffer.extend_from_slice(&length.to_be_bytes());
        self.buffer.resize(HEADER + size, 0);
        encode(&mut self.buffer[HEADER..])?;
        self.stream.write_all(&self.buffer)?;
        if self.buffer.capacity() > RETAINED {
            self.buffer = Vec::with_capacity(INITIAL);
        }
        Ok(())
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
