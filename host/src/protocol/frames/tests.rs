use plugin_api::PluginError;

use super::*;
use crate::protocol::{
    FromWorker, Outcome, Reply, ToWorker, WireContext, WireError, WireSpan, WorkerRequest,
};

const MAX: usize = 1 << 16;

/// `messages` written as frames, one after the other.
fn framed<T: Serialize>(messages: &[T]) -> Vec<u8> {
    let mut writer = FrameWriter::new(Vec::new(), MAX);
    for message in messages {
        writer.write(message).expect("written");
    }
    writer.stream
}

/// Every message read back from `bytes`, until the end.
fn read_all<T: DeserializeOwned>(bytes: &[u8]) -> std::io::Result<Vec<T>> {
    let mut reader = FrameReader::new(bytes, MAX);
    let mut out = Vec::new();
    while let Some(message) = reader.read()? {
        out.push(message);
    }
    Ok(out)
}

fn to_worker() -> Vec<ToWorker> {
    vec![
        ToWorker::Create {
            req: 1,
            instance: 2,
            component: "quotes".into(),
            config: "{}".into(),
            dependencies: vec!["clock".into()],
        },
        ToWorker::Call {
            req: 3,
            instance: 2,
            method: "bars".into(),
            input: b"{\"n\":3}".to_vec(),
            context: WireContext {
                remaining_nanos: Some(1_500_000_000),
                traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                tracestate: "vendor=1".into(),
                cpu_budget_nanos: Some(200_000_000),
            },
        },
        ToWorker::Cancel { req: 3 },
        ToWorker::Stopping,
        ToWorker::Drop {
            req: 4,
            instance: 2,
        },
        ToWorker::Stream {
            req: 5,
            instance: 2,
            method: "ticks".into(),
            input: Vec::new(),
            credit: 64,
            credit_bytes: 4 << 20,
            context: WireContext::default(),
        },
        ToWorker::Credit {
            req: 5,
            n: 16,
            bytes: 1 << 20,
        },
        ToWorker::Cancel { req: 5 },
        ToWorker::Reply {
            req: 6,
            reply: Reply::Error(WireError::UnknownMethod("nope".into())),
        },
    ]
}

fn from_worker() -> Vec<FromWorker> {
    vec![
        FromWorker::Refused { error: "no".into() },
        FromWorker::Created {
            req: 1,
            result: Err(PluginError::failed("create failed").into()),
        },
        FromWorker::Dropped { req: 4 },
        FromWorker::Returned {
            req: 3,
            result: Outcome::Done(serde_bytes::ByteBuf::from(b"[1,2]".to_vec())),
            cpu_nanos: 1_250_000,
        },
        FromWorker::Returned {
            req: 7,
            result: Outcome::TooLarge { size: 9, limit: 8 },
            cpu_nanos: 0,
        },
        FromWorker::Item {
            req: 5,
            item: b"\"tick\"".to_vec(),
        },
        FromWorker::StreamEnd {
            req: 5,
            result: Outcome::Failed(WireError::Failed("feed down".into())),
        },
        FromWorker::Log {
            level: 3,
            component: "quotes".into(),
            target: "quotes::feed".into(),
            message: "slow".into(),
            trace: Some(([7; 16], [9; 8])),
        },
        FromWorker::Span(WireSpan {
            trace_id: [7; 16],
            span_id: [1; 8],
            parent_span_id: [9; 8],
            name: "price".into(),
            target: "quotes".into(),
            component: "quotes".into(),
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            fields: "symbol=\"EURUSD\"".into(),
        }),
        FromWorker::WorkerLog {
            level: 3,
            target: "sandbox".into(),
            message: "in part".into(),
        },
        FromWorker::Record {
            metric: 0,
            value: 1.5,
        },
        FromWorker::Request {
            req: 8,
            instance: 2,
            call: Some((3, "bars".into())),
            request: WorkerRequest::Lock {
                name: "book".into(),
                timeout_ms: 100,
            },
        },
        FromWorker::Overrun {
            req: 3,
            cpu_nanos: 210_000_000,
        },
    ]
}

#[test]
fn every_message_either_way_crosses_a_link_intact() {
    let sent = to_worker();
    let read: Vec<ToWorker> = read_all(&framed(&sent)).expect("read back");
    assert_eq!(format!("{read:?}"), format!("{sent:?}"));
    let sent = from_worker();
    let read: Vec<FromWorker> = read_all(&framed(&sent)).expect("read back");
    assert_eq!(format!("{read:?}"), format!("{sent:?}"));
}

#[test]
fn the_end_between_two_frames_is_the_end_and_inside_one_is_an_error() {
    let bytes = framed(&to_worker());
    let messages: Vec<ToWorker> = read_all(&bytes).expect("whole frames");
    assert_eq!(messages.len(), to_worker().len());
    let err = read_all::<ToWorker>(&bytes[..bytes.len() - 3]).expect_err("cut short");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    let err = read_all::<ToWorker>(&bytes[..2]).expect_err("cut inside the length");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
}

#[test]
fn a_frame_past_the_limit_is_refused_on_either_side() {
    let big = ToWorker::Call {
        req: 1,
        instance: 1,
        method: "m".into(),
        input: vec![0; MAX],
        context: WireContext::default(),
    };
    let mut writer = FrameWriter::new(Vec::new(), MAX);
    assert!(writer.write(&big).is_err(), "the writer refuses to send it");
    let mut frame = u32::try_from(MAX + 1).expect("fits").to_be_bytes().to_vec();
    frame.extend(std::iter::repeat_n(0u8, MAX + 1));
    let err = read_all::<ToWorker>(&frame).expect_err("too large");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}

#[test]
fn a_frame_that_does_not_decode_is_refused() {
    // An unknown variant, then a known one cut short inside its frame.
    for payload in [vec![200u8], vec![1u8, 1]] {
        let mut frame = u32::try_from(payload.len())
            .expect("fits")
            .to_be_bytes()
            .to_vec();
        frame.extend(&payload);
        let err = read_all::<ToWorker>(&frame).expect_err("undecodable");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidData,
            "{payload:?}: {err}"
        );
    }
}

/// Frames over a real link, large ones in sealed memfds beside it.
#[cfg(target_os = "linux")]
mod shared {
    use std::os::fd::OwnedFd;

    use rustix::fs::{memfd_create, MemfdFlags};

    use super::*;
    use crate::platform::{link_pair, SealedRegion};

    const SHARE_FROM: usize = 1 << 10;

    fn call(input: Vec<u8>) -> ToWorker {
        ToWorker::Call {
            req: 9,
            instance: 1,
            method: "echo".into(),
            input,
            context: WireContext::default(),
        }
    }

    /// A memfd holding `bytes`, with no seal on it.
    fn unsealed(bytes: &[u8]) -> OwnedFd {
        let fd = memfd_create("test", MemfdFlags::ALLOW_SEALING).expect("memfd");
        rustix::io::write(&fd, bytes).expect("written");
        fd
    }

    /// What the reader makes of a frame announcing `region`.
    fn read_region(region: OwnedFd) -> std::io::Error {
        let (mut write, read) = link_pair().expect("link");
        write
            .write_with_region(&REGION_FRAME, SealedRegion::unchecked(region))
            .expect("sent");
        let mut reader = FrameReader::new(read, MAX);
        reader.read::<ToWorker>().expect_err("refused")
    }

    #[test]
    fn large_messages_cross_in_shared_memory_in_order_with_small_ones() {
        let (write, read) = link_pair().expect("link");
        let mut writer = FrameWriter::new(write, MAX).sharing_from(SHARE_FROM);
        let large: Vec<u8> = (0..MAX - 64).map(|i| (i % 251) as u8).collect();
        let sent = [
            call(large.clone()),
            ToWorker::Cancel { req: 9 },
            call(vec![1; SHARE_FROM]),
            call(large),
        ];
        let mut reader = FrameReader::new(read, MAX);
        for message in &sent {
            writer.write(message).expect("written");
            let got: ToWorker = reader.read().expect("read").expect("a message");
            assert_eq!(format!("{got:?}"), format!("{message:?}"));
        }
        assert!(
            reader.stream.take_region(MAX).is_err(),
            "every region taken by its frame"
        );
        drop(writer);
        assert!(reader.read::<ToWorker>().expect("the end").is_none());
    }

    #[test]
    fn a_large_message_puts_four_bytes_on_the_link_and_the_rest_in_a_sealed_region() {
        let (write, mut read) = link_pair().expect("link");
        let mut writer = FrameWriter::new(write, MAX).sharing_from(SHARE_FROM);
        let message = call(vec![5; SHARE_FROM * 4]);
        writer.write(&message).expect("written");
        drop(writer);
        let mut on_link = Vec::new();
        read.read_to_end(&mut on_link).expect("read");
        assert_eq!(on_link, REGION_FRAME);
        let region = read.take_region(MAX).expect("a region came");
        assert_eq!(&region[..], postcard::to_stdvec(&message).expect("encoded"));
    }

    #[test]
    fn a_large_message_stays_on_the_link_when_sharing_is_off() {
        let (write, read) = link_pair().expect("link");
        let mut writer = FrameWriter::new(write, MAX).sharing_from(0);
        let message = call(vec![3; MAX / 2]);
        let mut reader = FrameReader::new(read, MAX);
        let sending = std::thread::spawn(move || writer.write(&message).map(|()| message));
        let got: ToWorker = reader.read().expect("read").expect("a message");
        let message = sending.join().expect("writer").expect("written");
        assert_eq!(format!("{got:?}"), format!("{message:?}"));
    }

    #[test]
    fn a_region_frame_without_its_region_is_refused() {
        let (mut write, read) = link_pair().expect("link");
        write.write_all(&REGION_FRAME).expect("sent");
        let err = FrameReader::new(read, MAX)
            .read::<ToWorker>()
            .expect_err("refused");
        assert!(err.to_string().contains("without its region"), "{err}");
    }

    #[test]
    fn a_region_that_is_not_sealed_memory_of_a_frame_size_is_refused() {
        let message = postcard::to_stdvec(&ToWorker::Cancel { req: 1 }).expect("encoded");
        let err = read_region(unsealed(&message));
        assert!(err.to_string().contains("not sealed"), "{err}");
        let partly = unsealed(&message);
        rustix::fs::fcntl_add_seals(&partly, rustix::fs::SealFlags::SHRINK).expect("sealed");
        let err = read_region(partly);
        assert!(err.to_string().contains("not sealed"), "{err}");
        let err = read_region(unsealed(&[]));
        assert!(err.to_string().contains("holds 0 bytes"), "{err}");
        let err = read_region(unsealed(&vec![0; MAX + 1]));
        assert!(err.to_string().contains("frames hold 1 to"), "{err}");
        let (pipe, _other) = std::io::pipe().expect("pipe");
        let err = read_region(OwnedFd::from(pipe));
        assert!(err.to_string().contains("not a memory file"), "{err}");
    }

    #[test]
    fn descriptors_no_frame_announces_end_the_link() {
        let (mut write, read) = link_pair().expect("link");
        let frame = framed(&[ToWorker::Cancel { req: 1 }]);
        let mut reader = FrameReader::new(read, MAX);
        let err = loop {
            write
                .write_with_region(&frame, SealedRegion::unchecked(unsealed(b"x")))
                .expect("sent");
            if let Err(err) = reader.read::<ToWorker>() {
                break err;
            }
        };
        assert!(err.to_string().contains("no frame announced"), "{err}");
    }
}
