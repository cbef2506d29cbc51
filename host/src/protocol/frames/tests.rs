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
