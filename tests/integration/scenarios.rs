//! Hand-made TCP captures for the analyzer's tests: each scenario is a list of
//! segments (who sends, when, flags, seq/ack, payload size), written as an Ethernet
//! pcap file with real checksums (etherparse builds the headers), so that socklab and
//! tshark read the very same bytes.
//!
//! A pcap file is a 24-byte global header, then per packet a 16-byte record header
//! (seconds, microseconds, captured length, wire length) and the bytes.

#![allow(dead_code)] // the integration test and a scratch tool use different parts

use std::path::Path;

use etherparse::{PacketBuilder, TcpOptionElement};

/// The pcap magic for microsecond timestamps, little-endian.
const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
/// Snap length written in the header.
const SNAPLEN: u32 = 65_535;
/// The capture's start: 2024-01-01 00:00:00 UTC.
const START_SECS: u64 = 1_704_067_200;

pub const CLIENT_IP: [u8; 4] = [127, 0, 0, 1];
pub const SERVER_IP: [u8; 4] = [127, 0, 0, 2];
pub const SERVER_PORT: u16 = 12_000;

pub const SYN: u16 = 0x002;
pub const ACK: u16 = 0x010;
pub const FIN: u16 = 0x001;
pub const RST: u16 = 0x004;
pub const PSH: u16 = 0x008;

/// One segment of a scenario.
#[derive(Debug, Clone)]
pub struct Seg {
    pub from_client: bool,
    pub client_port: u16,
    /// Time since the start of the capture, µs.
    pub time_us: u64,
    pub flags: u16,
    pub seq: u32,
    pub ack: u32,
    pub len: usize,
    pub window: u16,
    pub window_scale: Option<u8>,
    pub mss: Option<u16>,
    pub sack_permitted: bool,
}

impl Seg {
    pub fn new(
        from_client: bool,
        client_port: u16,
        time_us: u64,
        flags: u16,
        seq: u32,
        ack: u32,
        len: usize,
    ) -> Seg {
        Seg {
            from_client,
            client_port,
            time_us,
            flags,
            seq,
            ack,
            len,
            window: 512,
            window_scale: None,
            mss: None,
            sack_permitted: false,
        }
    }

    /// Gives a SYN the options Linux sends: MSS, SACK permitted, window scale.
    pub fn syn_options(&mut self, mss: u16, window_scale: u8) -> &mut Seg {
        self.mss = Some(mss);
        self.window_scale = Some(window_scale);
        self.sack_permitted = true;
        self
    }

    /// The frame's bytes: Ethernet (zero MACs, as Linux loopback), IPv4, TCP, payload.
    pub fn bytes(&self) -> Vec<u8> {
        let (src, dst, sport, dport) = if self.from_client {
            (CLIENT_IP, SERVER_IP, self.client_port, SERVER_PORT)
        } else {
            (SERVER_IP, CLIENT_IP, SERVER_PORT, self.client_port)
        };
        let mut tcp = PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, self.seq, self.window);
        if self.flags & SYN != 0 {
            tcp = tcp.syn();
        }
        if self.flags & FIN != 0 {
            tcp = tcp.fin();
        }
        if self.flags & RST != 0 {
            tcp = tcp.rst();
        }
        if self.flags & PSH != 0 {
            tcp = tcp.psh();
        }
        if self.flags & ACK != 0 {
            tcp = tcp.ack(self.ack);
        }
        let mut options = Vec::new();
        if let Some(mss) = self.mss {
            options.push(TcpOptionElement::MaximumSegmentSize(mss));
        }
        if self.sack_permitted {
            options.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
        }
        if let Some(shift) = self.window_scale {
            options.push(TcpOptionElement::Noop);
            options.push(TcpOptionElement::WindowScale(shift));
        }
        if !options.is_empty() {
            tcp = tcp.options(&options).expect("the options fit in 40 bytes");
        }
        let payload: Vec<u8> = (0..self.len).map(|i| b'a' + (i % 26) as u8).collect();
        let mut bytes = Vec::new();
        tcp.write(&mut bytes, &payload).expect("write to a Vec");
        bytes
    }
}

/// Writes `frames` (time since start in µs, bytes) as a pcap file.
pub fn write_pcap(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let mut file = Vec::new();
    file.extend_from_slice(&PCAP_MAGIC.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    file.extend_from_slice(&4u16.to_le_bytes());
    file.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
    file.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy
    file.extend_from_slice(&SNAPLEN.to_le_bytes());
    file.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (time_us, bytes) in frames {
        let secs = START_SECS + time_us / 1_000_000;
        file.extend_from_slice(&(secs as u32).to_le_bytes());
        file.extend_from_slice(&((time_us % 1_000_000) as u32).to_le_bytes());
        file.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        file.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        file.extend_from_slice(bytes);
    }
    std::fs::write(path, file).expect("write the pcap file");
}

/// Writes a scenario's segments as a pcap file.
pub fn write_scenario(path: &Path, segments: &[Seg]) {
    let frames: Vec<(u64, Vec<u8>)> = segments.iter().map(|s| (s.time_us, s.bytes())).collect();
    write_pcap(path, &frames);
}

const C_ISN: u32 = 1_000_000;
const S_ISN: u32 = 7_000_000;

/// Builds one connection's segments with relative numbers and ms times.
struct Conn {
    port: u16,
    base_us: u64,
    segs: Vec<Seg>,
}

impl Conn {
    fn new(port: u16, base_ms: u64) -> Conn {
        Conn {
            port,
            base_us: base_ms * 1000,
            segs: Vec::new(),
        }
    }
    /// Client segment: times in ms (fractions allowed), relative seq/ack.
    fn c(&mut self, ms: f64, flags: u16, seq: u32, ack: u32, len: usize) -> &mut Seg {
        self.push(
            true,
            ms,
            flags,
            C_ISN.wrapping_add(seq),
            S_ISN.wrapping_add(ack),
            len,
        )
    }
    fn s(&mut self, ms: f64, flags: u16, seq: u32, ack: u32, len: usize) -> &mut Seg {
        self.push(
            false,
            ms,
            flags,
            S_ISN.wrapping_add(seq),
            C_ISN.wrapping_add(ack),
            len,
        )
    }
    fn push(
        &mut self,
        client: bool,
        ms: f64,
        flags: u16,
        seq: u32,
        ack: u32,
        len: usize,
    ) -> &mut Seg {
        let time = self.base_us + (ms * 1000.0).round() as u64;
        let ack = if flags & ACK != 0 { ack } else { 0 };
        self.segs
            .push(Seg::new(client, self.port, time, flags, seq, ack, len));
        self.segs.last_mut().expect("just pushed")
    }
    fn handshake(&mut self) {
        self.c(0.0, SYN, 0, 0, 0);
        self.s(1.0, SYN | ACK, 0, 1, 0);
        self.c(2.0, ACK, 1, 1, 0);
    }
}

/// Every analysis case in one capture, one connection each (client ports 40001...),
/// connections one second apart so they do not interleave.
pub fn all_cases() -> Vec<Seg> {
    let mut all = Vec::new();
    let mut n = 0;
    let mut next = |f: &dyn Fn(&mut Conn)| {
        n += 1;
        let mut conn = Conn::new(40_000 + n, 1000 * n as u64);
        f(&mut conn);
        all.extend(conn.segs);
    };
    // 1: data both ways, delayed ACK covering two segments, four-way close.
    next(&|k| {
        k.handshake();
        k.c(10.0, ACK | PSH, 1, 1, 100);
        k.c(10.1, ACK | PSH, 101, 1, 100);
        k.s(20.0, ACK, 1, 201, 0);
        k.s(21.0, ACK | PSH, 1, 201, 50);
        k.c(30.0, ACK, 201, 51, 0);
        k.c(40.0, FIN | ACK, 201, 51, 0);
        k.s(41.0, ACK, 51, 202, 0);
        k.s(42.0, FIN | ACK, 51, 202, 0);
        k.c(43.0, ACK, 202, 52, 0);
    });
    // 2: timeout retransmission, then three-way close.
    next(&|k| {
        k.handshake();
        k.c(10.0, ACK | PSH, 1, 1, 100);
        k.c(210.0, ACK | PSH, 1, 1, 100);
        k.s(211.0, ACK, 1, 101, 0);
        k.c(220.0, FIN | ACK, 101, 1, 0);
        k.s(221.0, FIN | ACK, 1, 102, 0);
        k.c(222.0, ACK, 102, 2, 0);
    });
    // 3: a lost segment, three duplicate ACKs, fast retransmission.
    next(&|k| {
        k.handshake();
        for i in 0..5u32 {
            if i != 1 {
                k.c(10.0 + f64::from(i) * 0.2, ACK, 1 + 100 * i, 1, 100);
            }
        }
        k.s(11.0, ACK, 1, 101, 0);
        k.s(11.2, ACK, 1, 101, 0);
        k.s(11.4, ACK, 1, 101, 0);
        k.s(11.6, ACK, 1, 101, 0);
        k.c(12.0, ACK, 101, 1, 100);
        k.s(13.0, ACK, 1, 501, 0);
    });
    // 4: out-of-order, then the same segment again much later.
    next(&|k| {
        k.handshake();
        k.c(10.0, ACK, 101, 1, 100);
        k.c(11.0, ACK, 1, 1, 100);
        k.s(12.0, ACK, 1, 201, 0);
        k.c(300.0, ACK, 1, 1, 100);
    });
    // 5: zero window, probe, probe ACK, window update.
    next(&|k| {
        k.handshake();
        k.c(10.0, ACK, 1, 1, 100);
        k.s(11.0, ACK, 1, 101, 0).window = 0;
        k.c(200.0, ACK, 101, 1, 1);
        k.s(201.0, ACK, 1, 101, 0).window = 0;
        k.s(300.0, ACK, 1, 101, 0).window = 1024;
    });
    // 6: keep-alive and its ACK.
    next(&|k| {
        k.handshake();
        k.c(500.0, ACK, 0, 1, 0);
        k.s(501.0, ACK, 1, 1, 0);
    });
    // 7: SYN answered by RST.
    next(&|k| {
        k.c(0.0, SYN, 0, 0, 0);
        k.s(0.1, RST | ACK, 0, 1, 0);
    });
    // 8: window scaling negotiated, a spurious retransmission.
    next(&|k| {
        k.c(0.0, SYN, 0, 0, 0).syn_options(65_495, 7).window = 65_535;
        k.s(1.0, SYN | ACK, 0, 1, 0).syn_options(65_495, 7).window = 65_483;
        k.c(2.0, ACK, 1, 1, 0);
        k.c(10.0, ACK | PSH, 1, 1, 100);
        k.s(11.0, ACK, 1, 101, 0);
        k.c(400.0, ACK | PSH, 1, 1, 100);
    });
    all
}
