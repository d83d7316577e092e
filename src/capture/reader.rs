//! Lab 4: reading a capture file (pcap or pcapng) one frame at a time, through libpcap.
//!
//! A capture file is a header and then, for each frame, a record header (time stamp,
//! captured length, length on the wire) followed by the captured bytes:
//!
//! ```text
//! pcap:   | file header (24 B) | rec hdr (16 B) | bytes | rec hdr | bytes | ...
//! pcapng: | SHB | IDB (link type, snaplen) | EPB (hdr + bytes) | EPB | ...
//! ```
//!
//! libpcap reads both formats (and both byte orders, and micro- or nanosecond time
//! stamps), so this file only turns its records into [`Frame`]s and its failures into
//! [`CaptureError`]s that name the file. It streams: only the current frame is in
//! memory, whatever the size of the file.
//!
//! Frame numbers count the frames handed out, starting at 1. Without a filter they are
//! the numbers Wireshark shows; with a BPF filter libpcap skips the frames that do not
//! match before we see them, so the numbers are those of the matching frames in order.

use std::path::{Path, PathBuf};

use pcap::{Capture, Offline, Precision};

use super::packet::{Frame, LinkType};
use super::CaptureError;

/// Microseconds in a second, to turn a (seconds, microseconds) time stamp into one number.
const MICROS_PER_SECOND: i64 = 1_000_000;

/// A capture file opened for reading, frame by frame.
pub struct CaptureFile {
    capture: Capture<Offline>,
    path: PathBuf,
    link: LinkType,
    /// Frames handed out so far; the next frame's number is one more.
    frames_read: u64,
    /// Set once the end of the file or an error was reached: later calls return
    /// `Ok(None)` instead of asking libpcap again.
    finished: bool,
}

/// Opens a pcap or pcapng capture file, with an optional BPF filter (tcpdump's filter
/// language: `tcp port 80`, `udp and host 127.0.0.1`) that libpcap applies while
/// reading.
///
/// Any link type is accepted here: a frame of a type the dissector does not read is
/// reported by [`super::dissect::dissect`] as malformed ("unsupported link type 147"),
/// so frame lists and counts still work on such a file.
///
/// # Errors
/// [`CaptureError::Open`] when the file is missing, unreadable, or not a pcap/pcapng
/// file; [`CaptureError::Filter`] when the filter does not compile.
pub fn open(path: &Path, filter: Option<&str>) -> Result<CaptureFile, CaptureError> {
    let open_error = |message: String| CaptureError::Open {
        path: path.to_path_buf(),
        message,
    };
    // Ask the OS first: its messages for a missing file, a permission problem or a
    // directory are clearer than what libpcap makes of them.
    let metadata = std::fs::metadata(path).map_err(|e| open_error(crate::net::describe(&e)))?;
    if metadata.is_dir() {
        return Err(open_error("is a directory".to_string()));
    }
    if let Err(error) = std::fs::File::open(path) {
        return Err(open_error(crate::net::describe(&error)));
    }
    if metadata.len() == 0 {
        return Err(open_error(
            "the file is empty, not a pcap or pcapng file".to_string(),
        ));
    }
    // libpcap takes a C string: the pcap crate would pass no name at all for a path
    // that is not UTF-8, so refuse it here.
    if path.to_str().is_none() {
        return Err(open_error(
            "the path is not valid UTF-8, which libpcap needs".to_string(),
        ));
    }
    // Micro: libpcap scales nanosecond files down, so every time stamp we get is in µs.
    let mut capture = Capture::from_file_with_precision(path, Precision::Micro)
        .map_err(|e| open_error(pcap_message(&e, path)))?;
    if let Some(filter) = filter {
        capture
            .filter(filter, true)
            .map_err(|e| CaptureError::Filter {
                filter: filter.to_string(),
                message: pcap_message(&e, path),
            })?;
    }
    let link = LinkType::from_number(capture.get_datalink().0 as u32);
    Ok(CaptureFile {
        capture,
        path: path.to_path_buf(),
        link,
        frames_read: 0,
        finished: false,
    })
}

impl CaptureFile {
    /// The link-layer type of the file's frames (from its header or first interface).
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The file this capture reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many frames [`CaptureFile::next_frame`] has handed out so far.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// The next frame, or `None` at the end of the file. The frame borrows libpcap's
    /// buffer, so it is valid until the next call.
    ///
    /// # Errors
    /// [`CaptureError::Truncated`] when the file ends in the middle of a frame (every
    /// frame before it has been returned: callers warn and still show their results);
    /// [`CaptureError::Read`] for any other read failure. After an error, further calls
    /// return `Ok(None)`.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.finished {
            return Ok(None);
        }
        match self.capture.next_packet() {
            Ok(packet) => {
                self.frames_read += 1;
                let header = packet.header;
                // time_t and suseconds_t are i64 on 64-bit Linux (so clippy sees a no-op)
                // but narrower on some 32-bit systems: widen both.
                #[allow(clippy::useless_conversion)]
                let (seconds, micros) = (i64::from(header.ts.tv_sec), i64::from(header.ts.tv_usec));
                Ok(Some(Frame {
                    number: self.frames_read,
                    time_us: seconds * MICROS_PER_SECOND + micros,
                    data: packet.data,
                    wire_len: header.len,
                }))
            }
            Err(pcap::Error::NoMorePackets) => {
                self.finished = true;
                Ok(None)
            }
            Err(error) => {
                self.finished = true;
                let message = pcap_message(&error, &self.path);
                // libpcap says "truncated dump file; tried to read 60 captured bytes,
                // only got 50" (pcap) or "truncated pcapng dump file; ..." (pcapng).
                if message.contains("truncated") {
                    Err(CaptureError::Truncated {
                        path: self.path.clone(),
                        after_frame: self.frames_read,
                    })
                } else {
                    Err(CaptureError::Read {
                        path: self.path.clone(),
                        message,
                    })
                }
            }
        }
    }
}

/// libpcap's message for `error`, without the "path: " it sometimes starts with (our
/// error names the path already) and with a lower-case first letter, as socklab's
/// one-line errors are written.
fn pcap_message(error: &pcap::Error, path: &Path) -> String {
    let text = match error {
        pcap::Error::PcapError(message) => message.clone(),
        other => other.to_string(),
    };
    let prefix = format!("{}: ", path.display());
    let text = text.strip_prefix(&prefix).unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown libpcap error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap::{Linktype, Packet as PcapPacket, PacketHeader};

    /// A minimal UDP/IPv4 frame on Ethernet (the bytes do not matter to the reader).
    const FRAME: [u8; 42] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1, // IPv4
        0x9c, 0x40, 0x2e, 0xe0, 0, 8, 0, 0, // UDP
    ];

    /// Writes `frames` (time in µs, bytes) to a pcap file with libpcap's own writer.
    fn write_pcap(path: &Path, link: i32, precision: Precision, frames: &[(i64, &[u8])]) {
        let dead = Capture::dead_with_precision(Linktype(link), precision).expect("dead handle");
        let mut savefile = dead.savefile(path).expect("create savefile");
        for &(time_us, data) in frames {
            let sub = match precision {
                Precision::Micro => time_us % 1_000_000,
                Precision::Nano => (time_us % 1_000_000) * 1000 + 789,
            };
            let header = PacketHeader {
                ts: libc_timeval(time_us / 1_000_000, sub),
                caplen: data.len() as u32,
                len: data.len() as u32 + 4,
            };
            savefile.write(&PcapPacket::new(&header, data));
        }
        savefile.flush().expect("flush savefile");
    }

    fn libc_timeval(sec: i64, usec: i64) -> libc::timeval {
        libc::timeval {
            tv_sec: sec as libc::time_t,
            tv_usec: usec as libc::suseconds_t,
        }
    }

    /// A frame as the tests compare it: number, time, captured length, wire length.
    type Seen = (u64, i64, usize, u32);

    fn collect(file: &mut CaptureFile) -> (Vec<Seen>, Option<CaptureError>) {
        let mut frames = Vec::new();
        loop {
            match file.next_frame() {
                Ok(Some(frame)) => frames.push((
                    frame.number,
                    frame.time_us,
                    frame.data.len(),
                    frame.wire_len,
                )),
                Ok(None) => return (frames, None),
                Err(error) => return (frames, Some(error)),
            }
        }
    }

    #[test]
    fn reads_frames_numbers_times_and_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("three.pcap");
        write_pcap(
            &path,
            1,
            Precision::Micro,
            &[
                (1_700_000_000_000_001, &FRAME),
                (1_700_000_000_500_000, &FRAME[..30]),
                (1_700_000_001_000_000, &FRAME),
            ],
        );
        let mut file = open(&path, None).unwrap();
        assert_eq!(file.link_type(), LinkType::Ethernet);
        let (frames, error) = collect(&mut file);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            frames,
            vec![
                (1, 1_700_000_000_000_001, 42, 46),
                (2, 1_700_000_000_500_000, 30, 34),
                (3, 1_700_000_001_000_000, 42, 46),
            ]
        );
        // The end stays the end.
        assert!(file.next_frame().unwrap().is_none());
        assert_eq!(file.frames_read(), 3);
    }

    #[test]
    fn nanosecond_files_give_microseconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nano.pcap");
        write_pcap(
            &path,
            228,
            Precision::Nano,
            &[(1_000_000_123_456, &FRAME[14..])],
        );
        let mut file = open(&path, None).unwrap();
        assert_eq!(file.link_type(), LinkType::Ipv4);
        let (frames, _) = collect(&mut file);
        // 123456 µs + 789 ns: the nanoseconds are dropped, not rounded into the seconds.
        assert_eq!(frames, vec![(1, 1_000_000_123_456, 28, 32)]);
    }

    #[test]
    fn a_filter_keeps_matching_frames_numbered_as_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.pcap");
        let mut arp = FRAME;
        arp[12] = 0x08;
        arp[13] = 0x06;
        write_pcap(
            &path,
            1,
            Precision::Micro,
            &[(1_000_000, &arp), (2_000_000, &FRAME), (3_000_000, &arp)],
        );
        let mut file = open(&path, Some("udp port 40000")).unwrap();
        let (frames, error) = collect(&mut file);
        assert!(error.is_none());
        assert_eq!(frames, vec![(1, 2_000_000, 42, 46)]);
    }

    #[test]
    fn a_bad_filter_names_the_filter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.pcap");
        write_pcap(&path, 1, Precision::Micro, &[(0, &FRAME)]);
        let error = open(&path, Some("udp prt 5"))
            .err()
            .expect("a bad filter fails");
        assert!(matches!(error, CaptureError::Filter { ref filter, .. } if filter == "udp prt 5"));
        let text = error.to_string();
        assert!(text.starts_with("bad filter 'udp prt 5': "), "{text}");
        assert!(text.contains("syntax error"), "{text}");
    }

    #[test]
    fn a_truncated_file_gives_its_frames_then_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.pcap");
        write_pcap(
            &path,
            1,
            Precision::Micro,
            &[
                (1_000_000, &FRAME),
                (2_000_000, &FRAME),
                (3_000_000, &FRAME),
            ],
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let mut file = open(&path, None).unwrap();
        let (frames, error) = collect(&mut file);
        assert_eq!(frames.len(), 2);
        match error {
            Some(CaptureError::Truncated {
                path: p,
                after_frame,
            }) => {
                assert_eq!(p, path);
                assert_eq!(after_frame, 2);
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
        assert!(file.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_file_cut_inside_a_record_header_is_truncated_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut-header.pcap");
        write_pcap(
            &path,
            1,
            Precision::Micro,
            &[(1_000_000, &FRAME), (2_000_000, &FRAME)],
        );
        let bytes = std::fs::read(&path).unwrap();
        // Keep the first record and 6 bytes of the second record's 16-byte header.
        let keep = 24 + 16 + FRAME.len() + 6;
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let mut file = open(&path, None).unwrap();
        let (frames, error) = collect(&mut file);
        assert_eq!(frames.len(), 1);
        assert!(
            matches!(error, Some(CaptureError::Truncated { after_frame: 1, .. })),
            "{error:?}"
        );
    }

    #[test]
    fn open_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pcap");
        let text = open(&missing, None).err().unwrap().to_string();
        assert_eq!(
            text,
            format!(
                "cannot open {}: no such file or directory",
                missing.display()
            )
        );

        let not_pcap = dir.path().join("notes.txt");
        std::fs::write(&not_pcap, "hello, this is not a capture file at all\n").unwrap();
        let error = open(&not_pcap, None).err().unwrap();
        assert!(matches!(error, CaptureError::Open { .. }));
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("cannot open {}: ", not_pcap.display())),
            "{text}"
        );
        assert!(text.contains("format"), "{text}");
        assert_eq!(text.lines().count(), 1);

        let empty = dir.path().join("empty.pcap");
        std::fs::write(&empty, "").unwrap();
        let text = open(&empty, None).err().unwrap().to_string();
        assert!(text.contains("empty"), "{text}");

        let text = open(dir.path(), None).err().unwrap().to_string();
        assert!(text.ends_with(": is a directory"), "{text}");
    }

    /// A pcapng file built by hand: section header, one Ethernet interface, one
    /// enhanced packet block holding [`FRAME`].
    fn pcapng_bytes() -> Vec<u8> {
        let mut out = Vec::new();
        let push32 = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        // Section header block: type, length, byte-order magic, version 1.0, length -1.
        push32(&mut out, 0x0A0D_0D0A);
        push32(&mut out, 28);
        push32(&mut out, 0x1A2B_3C4D);
        out.extend_from_slice(&[1, 0, 0, 0]);
        out.extend_from_slice(&[0xff; 8]);
        push32(&mut out, 28);
        // Interface description block: Ethernet, snaplen 65535.
        push32(&mut out, 1);
        push32(&mut out, 20);
        out.extend_from_slice(&[1, 0, 0, 0]);
        push32(&mut out, 65535);
        push32(&mut out, 20);
        // Enhanced packet block: the default resolution is microseconds.
        let time_us: u64 = 1_600_000_000_250_000;
        let padded = FRAME.len().div_ceil(4) * 4;
        let block_len = (32 + padded) as u32;
        push32(&mut out, 6);
        push32(&mut out, block_len);
        push32(&mut out, 0);
        push32(&mut out, (time_us >> 32) as u32);
        push32(&mut out, time_us as u32);
        push32(&mut out, FRAME.len() as u32);
        push32(&mut out, 60);
        out.extend_from_slice(&FRAME);
        out.resize(out.len() + padded - FRAME.len(), 0);
        push32(&mut out, block_len);
        out
    }

    #[test]
    fn reads_pcapng() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.pcapng");
        std::fs::write(&path, pcapng_bytes()).unwrap();
        let mut file = open(&path, None).unwrap();
        assert_eq!(file.link_type(), LinkType::Ethernet);
        let (frames, error) = collect(&mut file);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(frames, vec![(1, 1_600_000_000_250_000, 42, 60)]);
    }

    #[test]
    fn a_truncated_pcapng_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.pcapng");
        let bytes = pcapng_bytes();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let mut file = open(&path, None).unwrap();
        let (frames, error) = collect(&mut file);
        assert!(frames.is_empty());
        assert!(
            matches!(error, Some(CaptureError::Truncated { after_frame: 0, .. })),
            "{error:?}"
        );
    }

    #[test]
    fn unknown_link_types_open_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user0.pcap");
        write_pcap(&path, 147, Precision::Micro, &[(0, &FRAME)]);
        let mut file = open(&path, None).unwrap();
        assert_eq!(file.link_type(), LinkType::Unknown(147));
        assert_eq!(collect(&mut file).0.len(), 1);
    }
}
