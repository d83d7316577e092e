//! Lab 4: reading a capture on three threads, for the views that need only the
//! packets' headers (summary, flows, handshakes, tcp).
//!
//! ```text
//!   read (libpcap) ──kept frames──> dissect ──headers──> analyze + view
//!   "analyze-read"                  "analyze-dissect"    the calling thread
//! ```
//!
//! Reading is mostly the kernel and libpcap copying the file, dissecting is reading
//! headers, analysing is mostly looking flows up. On a machine with two cores or more
//! the three overlap, and the whole takes about the time of the slowest stage instead
//! of the sum of all three (BENCHMARKS.md#analyze).
//!
//! # Checksum while copying
//!
//! libpcap reuses its buffer for the next frame, so the reader must copy each frame
//! before handing it on. Copying whole frames costs the reader as much again as
//! libpcap's own reading, and the dissector would then read every byte a second time
//! to verify the checksums. Yet the views want only the headers and each TCP/UDP
//! checksum verdict. So the reader keeps a long frame's first [`HEAD`] bytes (every
//! header) and its last [`TAIL`] bytes (where the segment ends, and any link-layer
//! trailer), and for the bytes in between it keeps only their one's-complement sum,
//! computed while they are still in the processor's cache from libpcap's copy, which
//! is what the Linux kernel does when it checksums a packet as it copies it:
//!
//! ```text
//! a 1,514-byte frame:  | first 256 bytes | 1,194 bytes: only their sum | last 64 |
//!                        kept                                           kept
//! ```
//!
//! The dissector puts the segment's sum together from the head, the middle's sum and
//! the tail ([`dissect::dissect_kept`]), with the same verdict as on the whole frame.
//! Frames of up to `HEAD + TAIL` bytes are kept whole.
//!
//! If a frame needs bytes that were not kept (headers longer than 256 bytes, a trailer
//! longer than 64), the analysis does not guess: the frames before it are analysed as
//! usual, and from that frame on the file is read again one frame at a time, whole.
//! The result is the same; only the speed differs.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel};

use super::analyze::{read_in_one_stage, truncation_warning, write_error, Session};
use super::checksum::{add_words, fold};
use super::dissect::{self, NotKept, Skipped};
use super::packet::{Frame, LinkType, Packet};
use super::{reader, CaptureError};

/// Bytes kept from the start of a long frame: room for every header of a normal frame
/// (Ethernet with two VLAN tags 22, IPv4 with options 60 or IPv6 with 134 bytes of
/// extension headers, TCP with options 60).
pub const HEAD: usize = 256;

/// Bytes kept from the end of a long frame: the end of the TCP or UDP segment, and any
/// trailer after the IP packet (an Ethernet FCS is 4 bytes).
pub const TAIL: usize = 64;

/// Frames handed from one stage to the next at once: enough to make the hand-over
/// cheap, few enough to keep memory flat.
const STAGE_BATCH: usize = 4096;

/// Batches in flight between two stages: how far a stage may run ahead.
const STAGE_QUEUE: usize = 2;

/// A frame's numbers, and where its kept bytes are in its batch's buffer.
#[derive(Debug, Clone, Copy)]
struct FrameMeta {
    number: u64,
    time_us: i64,
    wire_len: u32,
    /// The kept bytes: `start..head_end` the head (or the whole frame), then
    /// `head_end..end` the tail.
    start: usize,
    head_end: usize,
    end: usize,
    /// For a long frame, how many bytes were skipped between head and tail, and their
    /// sum; `None` when the frame was kept whole.
    skipped: Option<(usize, u16)>,
}

/// Frames as read: their kept bytes one after another in `bytes`. At most
/// `STAGE_BATCH * (HEAD + TAIL)` bytes (1.3 MB), so the buffer never grows once made.
struct RawBatch {
    bytes: Vec<u8>,
    frames: Vec<FrameMeta>,
}

impl RawBatch {
    fn new() -> RawBatch {
        RawBatch {
            bytes: Vec::with_capacity(STAGE_BATCH * (HEAD + TAIL)),
            frames: Vec::with_capacity(STAGE_BATCH),
        }
    }

    /// Appends what the reader keeps of `frame`: all of a short one; of a long one
    /// the head and the tail, and the sum of the bytes between.
    fn keep(&mut self, frame: &Frame<'_>) {
        let data = frame.data;
        let start = self.bytes.len();
        let parts = (data.len() > HEAD + TAIL)
            .then(|| {
                let (head, rest) = data.split_at_checked(HEAD)?;
                let (middle, tail) = rest.split_at_checked(rest.len().checked_sub(TAIL)?)?;
                Some((head, middle, tail))
            })
            .flatten();
        let skipped = match parts {
            Some((head, middle, tail)) => {
                self.bytes.extend_from_slice(head);
                self.bytes.extend_from_slice(tail);
                Some((middle.len(), fold(add_words(0, middle))))
            }
            None => {
                self.bytes.extend_from_slice(data);
                None
            }
        };
        let end = self.bytes.len();
        let head_end = if skipped.is_some() { start + HEAD } else { end };
        self.frames.push(FrameMeta {
            number: frame.number,
            time_us: frame.time_us,
            wire_len: frame.wire_len,
            start,
            head_end,
            end,
            skipped,
        });
    }

    /// Dissects the batch's frames in order, up to the first that needs bytes that
    /// were not kept: the packets, and that frame's number if there is one.
    fn dissect(&self, link: LinkType) -> (Packets, Option<u64>) {
        let mut packets = Vec::with_capacity(self.frames.len());
        for meta in &self.frames {
            let frame = Frame {
                number: meta.number,
                time_us: meta.time_us,
                data: self.bytes.get(meta.start..meta.head_end).unwrap_or(&[]),
                wire_len: meta.wire_len,
            };
            let packet = match meta.skipped {
                None => dissect::dissect(link, &frame).without_payload(),
                Some((len, sum)) => {
                    let tail = self.bytes.get(meta.head_end..meta.end).unwrap_or(&[]);
                    match dissect::dissect_kept(link, &frame, Skipped { len, sum, tail }) {
                        Ok(packet) => packet,
                        Err(NotKept) => return (packets, Some(meta.number)),
                    }
                }
            };
            packets.push((*meta, packet));
        }
        (packets, None)
    }
}

/// Dissected frames, in order.
type Packets = Vec<(FrameMeta, Packet<'static>)>;

/// What the reading stage sends to the dissecting stage: frames, then how the file
/// ended.
enum Read {
    Frames(RawBatch),
    End(Result<(), CaptureError>),
}

/// What the dissecting stage sends to the analysing stage.
enum Dissected {
    Frames(Packets),
    /// This frame needs bytes the reader did not keep: read the rest of the file whole.
    ReadWholeFrom(u64),
    End(Result<(), CaptureError>),
}

/// How a staged reading went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Staged {
    /// Warnings for stderr (a file cut short).
    pub warnings: Vec<String>,
    /// The frame from which the file was read again one frame at a time, because it
    /// needed bytes the reader had not kept.
    pub read_whole_from: Option<u64>,
}

/// Reads `capture` (opened from `path` with `filter`) in three stages and feeds every
/// frame to `session`. See the module documentation.
///
/// # Errors
/// The analysis threads cannot start, reading fails other than by a cut (which is a
/// warning), the file cannot be opened again for a fallback, or writing to `out` fails.
pub fn read_in_stages(
    mut capture: reader::CaptureFile,
    path: &Path,
    filter: Option<&str>,
    session: &mut Session,
    out: &mut dyn Write,
) -> Result<Staged, CaptureError> {
    let link = capture.link_type();
    let (raw_sender, raw_receiver) = sync_channel::<Read>(STAGE_QUEUE);
    let (dissected_sender, dissected_receiver) = sync_channel::<Dissected>(STAGE_QUEUE);
    // Dissected batches' buffers go back to the reader, so memory stays a few batches
    // whatever the file's size.
    let (recycle_sender, recycle_receiver) = channel::<RawBatch>();
    let mut staged = Staged::default();
    std::thread::scope(|scope| {
        // Named, so `top -H` and `perf report --sort comm` tell the stages apart.
        let reader = std::thread::Builder::new().name("analyze-read".into());
        let dissector = std::thread::Builder::new().name("analyze-dissect".into());
        let spawned = reader.spawn_scoped(scope, move || {
            let mut batch = RawBatch::new();
            let end = loop {
                match capture.next_frame() {
                    Ok(Some(frame)) => {
                        batch.keep(&frame);
                        if batch.frames.len() == STAGE_BATCH {
                            let mut next = recycle_receiver
                                .try_recv()
                                .unwrap_or_else(|_| RawBatch::new());
                            next.bytes.clear();
                            next.frames.clear();
                            let full = std::mem::replace(&mut batch, next);
                            if raw_sender.send(Read::Frames(full)).is_err() {
                                return; // a later stage stopped
                            }
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(error) => break Err(error),
                }
            };
            let _ = raw_sender.send(Read::Frames(batch));
            let _ = raw_sender.send(Read::End(end));
        });
        let spawned = spawned.and_then(|_| {
            dissector.spawn_scoped(scope, move || {
                for read in raw_receiver.iter() {
                    let (staged, more) = match read {
                        Read::Frames(batch) => {
                            let (packets, not_kept) = batch.dissect(link);
                            // The reader may be gone already; then the buffer is simply freed.
                            let _ = recycle_sender.send(batch);
                            (
                                Dissected::Frames(packets),
                                not_kept.map(Dissected::ReadWholeFrom),
                            )
                        }
                        Read::End(end) => (Dissected::End(end), None),
                    };
                    if dissected_sender.send(staged).is_err() {
                        return;
                    }
                    if let Some(more) = more {
                        // Returning drops the receiver, which stops the reader.
                        let _ = dissected_sender.send(more);
                        return;
                    }
                }
            })
        });
        if let Err(source) = spawned {
            return Err(CaptureError::Io {
                what: "cannot start the analysis threads".to_string(),
                source,
            });
        }
        // Moved into this closure, so that returning early (a failed write) drops it:
        // the dissector's next send then fails and it stops, which stops the reader,
        // and the scope's wait for both ends. Borrowed instead, it would outlive the
        // return, and the scope would wait forever for a dissector blocked on a full
        // queue.
        let dissected_receiver = dissected_receiver;
        for dissected in dissected_receiver.iter() {
            match dissected {
                Dissected::Frames(frames) => {
                    for (meta, packet) in &frames {
                        let frame = Frame {
                            number: meta.number,
                            time_us: meta.time_us,
                            data: &[],
                            wire_len: meta.wire_len,
                        };
                        session.observe(&frame, packet, out).map_err(write_error)?;
                    }
                }
                Dissected::ReadWholeFrom(number) => {
                    staged.read_whole_from = Some(number);
                    break;
                }
                Dissected::End(Ok(())) => {}
                Dissected::End(Err(truncated @ CaptureError::Truncated { .. })) => {
                    staged.warnings.push(truncation_warning(&truncated));
                }
                Dissected::End(Err(other)) => return Err(other),
            }
        }
        Ok(())
    })?;
    if let Some(number) = staged.read_whole_from {
        let warnings = read_whole_from(path, filter, number, session, out)?;
        staged.warnings.extend(warnings);
    }
    Ok(staged)
}

/// Reads `path` again with the same filter, so the frames and their numbers are the
/// same, skips the frames before `number` (already analysed) and analyses the rest one
/// whole frame at a time.
fn read_whole_from(
    path: &Path,
    filter: Option<&str>,
    number: u64,
    session: &mut Session,
    out: &mut dyn Write,
) -> Result<Vec<String>, CaptureError> {
    let mut capture = reader::open(path, filter)?;
    while capture.frames_read() + 1 < number {
        match capture.next_frame() {
            Ok(Some(_)) => {}
            // The file changed under us: nothing more to read.
            Ok(None) => return Ok(Vec::new()),
            Err(truncated @ CaptureError::Truncated { .. }) => {
                return Ok(vec![truncation_warning(&truncated)])
            }
            Err(other) => return Err(other),
        }
    }
    read_in_one_stage(capture, session, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::analyze::View;
    use etherparse::PacketBuilder;
    use pcap::{Capture, Linktype, Packet as PcapPacket, PacketHeader, Precision};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Writes `count` TCP segments on Ethernet (real MACs, so checksums are verified) of
    /// seven interleaved connections, with payloads of 0 to 1,400 bytes; a few carry a
    /// flipped payload bit (a bad checksum), and frame `trailer_at` a 100-byte trailer
    /// after its IP packet, which the staged reader's 64-byte tail cannot hold.
    fn write_capture(path: &Path, count: usize, trailer_at: Option<u64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(256);
        let dead =
            Capture::dead_with_precision(Linktype(1), Precision::Micro).expect("dead handle");
        let mut savefile = dead.savefile(path).expect("create savefile");
        let mut seq = [1_000u32; 7];
        for number in 1..=count as u64 {
            let connection = rng.gen_range(0..7usize);
            let len = if trailer_at == Some(number) {
                1400 // long, so the reader keeps only its head, sum and tail
            } else {
                [0, 100, 1400][rng.gen_range(0..3)]
            };
            let payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let mut bytes = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(40_000 + connection as u16, 80, seq[connection], 65_535)
                .ack(1)
                .write(&mut bytes, &payload)
                .expect("build a segment");
            seq[connection] = seq[connection].wrapping_add(payload.len() as u32);
            if payload.len() > 100 && rng.gen_bool(0.01) {
                let last = bytes.len() - 1;
                bytes[last] ^= 0x10;
            }
            if trailer_at == Some(number) {
                bytes.extend_from_slice(&[0xEE; 100]);
            }
            let header = PacketHeader {
                ts: libc::timeval {
                    tv_sec: 1_700_000_000,
                    tv_usec: number as libc::suseconds_t,
                },
                caplen: bytes.len() as u32,
                len: bytes.len() as u32,
            };
            savefile.write(&PcapPacket::new(&header, &bytes));
        }
        savefile.flush().expect("flush savefile");
    }

    /// Frames up to `HEAD + TAIL` bytes are kept whole; a longer one keeps its head and
    /// tail, and the length and sum of the bytes between.
    #[test]
    fn keep_takes_short_frames_whole_and_long_ones_as_head_sum_and_tail() {
        let data: Vec<u8> = (0..2000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut batch = RawBatch::new();
        for len in [0, 60, HEAD + TAIL, HEAD + TAIL + 1, 1514, 2000] {
            batch.keep(&Frame {
                number: len as u64,
                time_us: 0,
                data: &data[..len],
                wire_len: len as u32,
            });
        }
        let kept: Vec<_> = batch
            .frames
            .iter()
            .map(|m| (m.end - m.start, m.head_end - m.start, m.skipped))
            .collect();
        let middle = |len: usize| {
            let bytes = &data[HEAD..len - TAIL];
            Some((bytes.len(), fold(add_words(0, bytes))))
        };
        assert_eq!(
            kept,
            [
                (0, 0, None),
                (60, 60, None),
                (HEAD + TAIL, HEAD + TAIL, None),
                (HEAD + TAIL, HEAD, middle(HEAD + TAIL + 1)),
                (HEAD + TAIL, HEAD, middle(1514)),
                (HEAD + TAIL, HEAD, middle(2000)),
            ]
        );
        // The last frame's kept bytes: its first HEAD bytes, then its last TAIL.
        let last = batch.frames[5];
        assert_eq!(&batch.bytes[last.start..last.head_end], &data[..HEAD]);
        assert_eq!(
            &batch.bytes[last.head_end..last.end],
            &data[2000 - TAIL..2000]
        );
    }

    /// A writer whose every write fails, as on a full disk.
    struct DiskFull;

    impl Write for DiskFull {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("no space left on device"))
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A write that fails while the stages are busy ends the analysis with that error;
    /// the reader and the dissector, blocked on full queues, are stopped, not waited
    /// for forever. (Run on a thread, so a hang fails the test instead of stalling it.)
    #[test]
    fn a_failed_write_stops_every_stage() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("big.pcap");
        // More frames than the queues between the stages hold.
        write_capture(&path, 8 * STAGE_BATCH, None);
        let (done, result) = std::sync::mpsc::channel();
        let reading = path.clone();
        std::thread::spawn(move || {
            let capture = reader::open(&reading, None).expect("open");
            let mut session = Session::new(
                &View::Tcp { stream: None },
                true,
                false,
                capture.link_type(),
            )
            .expect("a view");
            let outcome = read_in_stages(capture, &reading, None, &mut session, &mut DiskFull);
            let _ = done.send(outcome.map(|staged| staged.warnings));
        });
        let outcome = result
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the analysis ended instead of hanging");
        match outcome {
            Err(CaptureError::Io { what, source }) => {
                assert!(what.contains("cannot write"), "{what}");
                assert!(source.to_string().contains("no space"), "{source}");
            }
            other => panic!("expected the write error, got {other:?}"),
        }
    }

    /// Output, warnings and staging outcome of one view, read staged or one at a time.
    fn run(
        path: &Path,
        filter: Option<&str>,
        view: &View,
        staged: bool,
    ) -> (String, Vec<String>, Option<u64>) {
        let capture = reader::open(path, filter).expect("open");
        let link = capture.link_type();
        let mut session = Session::new(view, true, false, link).expect("a view");
        let mut out = Vec::new();
        let (warnings, from) = if staged {
            let staged =
                read_in_stages(capture, path, filter, &mut session, &mut out).expect("read");
            (staged.warnings, staged.read_whole_from)
        } else {
            (
                read_in_one_stage(capture, &mut session, &mut out).expect("read"),
                None,
            )
        };
        session.finish(&mut out).expect("finish");
        (String::from_utf8(out).expect("text"), warnings, from)
    }

    /// Over several batches, long frames kept as head, sum and tail give exactly the
    /// one-at-a-time analysis, bad checksums included; a frame needing more than was
    /// kept switches the rest of the file to whole frames, with the same result.
    #[test]
    fn kept_frames_and_the_fallback_match_one_frame_at_a_time() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let frames = STAGE_BATCH + 1000;
        let trailer_at = STAGE_BATCH as u64 + 500; // in the second batch
        for (name, trailer) in [("plain.pcap", None), ("trailer.pcap", Some(trailer_at))] {
            let path = dir.path().join(name);
            write_capture(&path, frames, trailer);
            for view in [View::Summary, View::Flows, View::Tcp { stream: None }] {
                let (staged, one) = (
                    run(&path, None, &view, true),
                    run(&path, None, &view, false),
                );
                assert_eq!(staged.0, one.0, "{name} {view:?}");
                assert_eq!(staged.1, one.1, "{name} {view:?}: warnings");
                assert_eq!(
                    staged.2, trailer,
                    "{name} {view:?}: where whole frames were read from"
                );
            }
            // Every frame was read, and some checksums were verified bad from the sums.
            let summary = run(&path, None, &View::Summary, true).0;
            assert!(
                summary.contains(&format!("\"frames\":{frames}")),
                "{summary}"
            );
            let bad = summary
                .lines()
                .find(|line| line.contains("\"event\":\"bad_checksums\""))
                .expect("a bad_checksums row");
            assert!(!bad.contains("\"count\":0"), "{bad}");
        }
        // With a BPF filter the fallback reopens the file with the same filter, so it
        // skips to the same frame: here the long frames only, numbered as read.
        let path = dir.path().join("trailer.pcap");
        let filter = Some("greater 1000");
        let view = View::Tcp { stream: None };
        let (staged, one) = (
            run(&path, filter, &view, true),
            run(&path, filter, &view, false),
        );
        assert_eq!(staged.0, one.0, "filtered");
        assert!(staged.2.is_some_and(|n| n < trailer_at), "{:?}", staged.2);
    }
}
