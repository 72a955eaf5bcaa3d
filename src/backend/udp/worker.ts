// The UDP backend's data path: one worker thread per direction.
//
//   tx: TUN -> UDP. read() packets from the TUN until it is empty (or the
//       batch is full), turn each into datagrams, send the batch with one
//       sendmmsg(). A TSO super-packet (up to 64 KiB, handed over when the
//       TUN advertises TSO) is cut into MSS-sized TCP segments here — each a
//       complete IPv4 packet, as flannel sends them — and the segments go out
//       as one UDP GSO message (UDP_SEGMENT), so the kernel builds the
//       datagrams. Segment headers are written to a side area and paired with
//       their payload in place through iovecs: payload bytes are never
//       copied in JS.
//   rx: UDP -> TUN. recvmmsg() a batch of datagrams (with UDP_GRO a message
//       is a train of equal-size datagrams), validate each, decrement its
//       TTL, and write it to the TUN. Consecutive segments of one TCP flow
//       are merged (userspace GRO) and written as one TSO packet with a
//       virtio-net header; the rest are written one per write().
//
// Rules of the loop: synchronous koffi calls only (async ones cost ~20 µs);
// no allocation per packet (all buffers, iovecs and message headers live in
// one malloc'd arena whose address never changes); the only blocking call is
// poll() with a timeout, after which the shared stop flag is checked — a
// thread blocked in a native call could not be terminated, and process exit
// would hang on it. Route updates arrive as whole immutable tables on a
// MessagePort; a generation counter in shared memory tells the tx loop to
// pick one up, so the data path never stops for them.

import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import * as N from './native.js';
import * as P from './packet.js';
import { wasmArena } from './csum-wasm.js';
import { RX_BASE, RX_COUNTERS, TX_BASE, TX_COUNTERS, type RxCounter, type TxCounter } from './counters.js';

export interface WorkerInit {
  role: 'tx' | 'rx';
  tunFd: number;
  udpFd: number;
  /** destination port for every peer (flannel assumes all use its own) */
  port: number;
  /** the TUN's address (our subnet's network address), source of ICMP errors */
  tunAddr: number;
  /** tx: the TUN hands out TSO super-packets and the socket can send UDP GSO */
  gso: boolean;
  /** rx: coalesce TCP segments into TSO writes */
  coalesce: boolean;
  /** Int32Array: [0] stop flag, [1] route generation, [2] local-address generation */
  ctrl: SharedArrayBuffer;
  /** Float64Array, see counters.ts */
  counters: SharedArrayBuffer;
  /** tx: route tables (RouteUpdate); rx: this host's addresses (LocalsUpdate) */
  updates?: MessagePort;
  pollMs: number;
  /** packets read per tx batch / messages per recvmmsg */
  batch: number;
}

export type WorkerReport =
  | { type: 'ready'; simd: boolean }
  | { type: 'warn'; message: string }
  | { type: 'fatal'; message: string; errno: number };

export interface RouteUpdate {
  gen: number;
  routes: Uint32Array;
}

export interface LocalsUpdate {
  gen: number;
  addrs: Uint32Array;
}

export const CTRL_STOP = 0;
export const CTRL_GEN = 1;
export const CTRL_LOCALS_GEN = 2;

const EBADFD = 77;
/** The most segments the kernel takes in one UDP GSO send (UDP_MAX_SEGMENTS). */
const UDP_MAX_SEGMENTS = 64;
/** Largest UDP payload of one send. */
const MAX_UDP_PAYLOAD = 65507;
const SLOT_SIZE = 65536 + 64;
const HDR_SLOT = 128;

function setPtr(dv: DataView, off: number, addr: number): void {
  dv.setUint32(off, addr >>> 0, true);
  dv.setUint32(off + 4, Math.floor(addr / 4294967296), true);
}

function setSize(dv: DataView, off: number, n: number): void {
  dv.setUint32(off, n >>> 0, true);
  dv.setUint32(off + 4, 0, true);
}

class Reporter {
  private readonly last = new Map<string, number>();
  post(m: WorkerReport): void {
    parentPort?.postMessage(m);
  }
  /** Rate-limited warning: one per key per 10 s (the data path must not flood the log). */
  warn(key: string, message: string): void {
    const now = Date.now();
    const t = this.last.get(key);
    if (t !== undefined && now - t < 10_000) return;
    this.last.set(key, now);
    this.post({ type: 'warn', message });
  }
}

const k = {
  tx: (name: TxCounter): number => TX_BASE + TX_COUNTERS.indexOf(name),
  rx: (name: RxCounter): number => RX_BASE + RX_COUNTERS.indexOf(name),
};

/** Counter slots for the parser's drop verdicts shared by both directions. */
function verdictSlots(slot: (name: 'dropShort' | 'dropNotIPv4' | 'dropBadHeaderLen' | 'dropBadTotalLen' | 'dropTtlExpired') => number): Int32Array {
  const d = new Int32Array(P.VERDICT_NAMES.length);
  d[P.SHORT] = slot('dropShort');
  d[P.NOT_IPV4] = slot('dropNotIPv4');
  d[P.BAD_HEADER_LEN] = slot('dropBadHeaderLen');
  d[P.BAD_TOTAL_LEN] = slot('dropBadTotalLen');
  d[P.TTL_EXPIRED] = slot('dropTtlExpired');
  return d;
}

// ================================================================== tx

class TxLoop {
  private readonly lib = N.libc();
  private readonly a: N.NativeBlock;
  /** sum16 over the arena: the Wasm SIMD kernel when available */
  private readonly sum: (off: number, len: number) => number;
  private readonly simd: boolean;
  private readonly dv: DataView;
  private readonly base: number;
  private readonly stop: Int32Array;
  private readonly c: Float64Array;
  private routes = new P.RouteTable();
  private routeGen = 0;
  private readonly hop = { peer: 0 };
  private readonly tso = P.newTsoInfo();
  private readonly rep = new Reporter();

  // arena layout
  private readonly slots: number;
  private readonly maxMsgs: number;
  private readonly maxIov: number;
  private readonly maxHdrs: number;
  private readonly offSlots = 0;
  private readonly offHdrs: number;
  private readonly offIov: number;
  private readonly offMsgs: number;
  private readonly offNames: number;
  private readonly offCmsg: number;
  private readonly offIcmp: number;
  private readonly offPoll: number;

  // pending batch
  private nmsg = 0;
  private niov = 0;
  private nhdr = 0;
  private readonly msgSegs: Int32Array;
  private readonly msgBytes: Float64Array;

  // counter slots
  private readonly kPackets: number;
  private readonly kBytes: number;
  private readonly kReads: number;
  private readonly kTso: number;
  private readonly kSendCalls: number;
  private readonly kIcmp: number;
  private readonly kDrop: Int32Array; // verdict -> counter slot
  private readonly kDropCsum: number;
  private readonly kDropSend: number;

  constructor(private readonly init: WorkerInit) {
    this.stop = new Int32Array(init.ctrl);
    this.c = new Float64Array(init.counters);
    this.kPackets = k.tx('packets');
    this.kBytes = k.tx('bytes');
    this.kReads = k.tx('tunReads');
    this.kTso = k.tx('tsoPackets');
    this.kSendCalls = k.tx('sendCalls');
    this.kIcmp = k.tx('icmpUnreachableSent');
    this.kDropCsum = k.tx('dropBadChecksumOffload');
    this.kDropSend = k.tx('dropSendError');
    this.kDrop = verdictSlots(k.tx);
    this.kDrop[P.NO_ROUTE] = k.tx('dropNoRoute');
    this.kDrop[P.BAD_GSO] = k.tx('dropBadGso');

    this.slots = Math.max(1, init.batch);
    // Room for the segments of a few full TSO packets per flush.
    this.maxHdrs = 1024;
    this.maxIov = 2 * this.maxHdrs + this.slots;
    this.maxMsgs = 256 + this.slots;
    this.offHdrs = this.offSlots + this.slots * SLOT_SIZE;
    this.offIov = this.offHdrs + this.maxHdrs * HDR_SLOT;
    this.offMsgs = this.offIov + this.maxIov * N.IOVEC_SIZE;
    this.offNames = this.offMsgs + this.maxMsgs * N.MMSGHDR_SIZE;
    this.offCmsg = this.offNames + this.maxMsgs * N.SOCKADDR_IN_SIZE;
    this.offIcmp = this.offCmsg + this.maxMsgs * N.CMSG_SPACE_INT;
    this.offPoll = this.offIcmp + 256;
    const w = wasmArena(this.offPoll + 16);
    if (w) {
      this.a = w;
      this.sum = w.sum16;
    } else {
      this.a = N.nativeBlock(this.lib, this.offPoll + 16);
      const dv = this.a.dv;
      this.sum = (off, len) => P.sum16(dv, off, len);
    }
    this.simd = w !== null;
    this.dv = this.a.dv;
    this.base = this.a.addr;
    this.msgSegs = new Int32Array(this.maxMsgs);
    this.msgBytes = new Float64Array(this.maxMsgs);
  }

  private stopping(): boolean {
    return Atomics.load(this.stop, CTRL_STOP) !== 0;
  }

  private checkRoutes(): void {
    if (Atomics.load(this.stop, CTRL_GEN) === this.routeGen || !this.init.updates) return;
    for (;;) {
      const m = receiveMessageOnPort(this.init.updates);
      if (!m) break;
      const u = m.message as RouteUpdate;
      this.routes = new P.RouteTable(u.routes);
      this.routeGen = u.gen;
    }
  }

  run(): void {
    const { lib, dv } = this;
    const tunFd = this.init.tunFd;
    this.rep.post({ type: 'ready', simd: this.simd });
    while (!this.stopping()) {
      this.checkRoutes();
      let slot = 0;
      while (slot < this.slots) {
        const addr = this.base + this.offSlots + slot * SLOT_SIZE;
        const n = lib.read(tunFd, addr, SLOT_SIZE);
        if (n < 0) {
          const e = lib.errno();
          if (e === N.EINTR) continue;
          if (e === N.EAGAIN) break;
          this.flush();
          if (e === EBADFD || e === N.EBADF || e === N.EIO) {
            this.rep.post({ type: 'fatal', errno: e, message: `read from the TUN device failed: ${lib.strerror(e)} (errno ${e}); the device is gone` });
            return;
          }
          this.rep.warn(`read:${e}`, `read from the TUN device failed: ${lib.strerror(e)} (errno ${e})`);
          lib.pollAt(this.base + this.offPoll, 0, 10); // back off instead of spinning on a persistent error
          break;
        }
        this.c[this.kReads]!++;
        this.packet(this.offSlots + slot * SLOT_SIZE, n);
        slot++;
      }
      this.flush();
      if (slot === 0) {
        // Nothing read: wait for the TUN (bounded, so the stop flag is seen).
        dv.setInt32(this.offPoll, tunFd, true);
        dv.setInt16(this.offPoll + 4, N.POLLIN, true);
        dv.setInt16(this.offPoll + 6, 0, true);
        lib.pollAt(this.base + this.offPoll, 1, this.init.pollMs);
      }
    }
  }

  /** One read from the TUN: virtio-net header + packet at arena offset `off`. */
  private packet(off: number, n: number): void {
    const dv = this.dv;
    if (n < N.VNET_HDR_LEN + 1) {
      this.c[this.kDrop[P.SHORT]!]!++;
      return;
    }
    const flags = dv.getUint8(off);
    const gsoType = dv.getUint8(off + 1) & ~N.VIRTIO_NET_HDR_GSO_ECN;
    const pkt = off + N.VNET_HDR_LEN;
    const len = n - N.VNET_HDR_LEN;
    if (gsoType === N.VIRTIO_NET_HDR_GSO_NONE) {
      if (flags & N.VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        if (!P.completeChecksum(dv, pkt, len, dv.getUint16(off + 6, true), dv.getUint16(off + 8, true))) {
          this.c[this.kDropCsum]!++;
          return;
        }
      }
      const v = P.tunVerdict(dv, pkt, len, this.routes, this.hop);
      if (v !== P.OK) {
        this.c[this.kDrop[v]!]!++;
        if (v === P.NO_ROUTE) this.unreachable(pkt, len);
        return;
      }
      if (this.nmsg + 1 > this.maxMsgs || this.niov + 1 > this.maxIov) this.flush();
      const iov = this.offIov + this.niov * N.IOVEC_SIZE;
      setPtr(dv, iov, this.base + pkt);
      setSize(dv, iov + 8, len);
      this.addMessage(this.hop.peer, this.niov, 1, 0, 1, len);
      this.niov += 1;
      return;
    }
    if (gsoType !== N.VIRTIO_NET_HDR_GSO_TCPV4) {
      this.c[this.kDrop[P.BAD_GSO]!]!++;
      return;
    }
    this.c[this.kTso]!++;
    const info = this.tso;
    const v = P.parseTso(dv, pkt, len, dv.getUint16(off + 4, true), info);
    if (v !== P.OK) {
      this.c[this.kDrop[v]!]!++;
      return;
    }
    const peer = this.routes.lookup(dv.getUint32(pkt + 16));
    if (peer === 0) {
      this.c[this.kDrop[P.NO_ROUTE]!]! += info.segs;
      this.unreachable(pkt, len);
      return;
    }
    const ttl = dv.getUint8(pkt + 8);
    if (ttl <= 1) {
      this.c[this.kDrop[P.TTL_EXPIRED]!]! += info.segs;
      return;
    }
    dv.setUint8(pkt + 8, ttl - 1); // checksums are recomputed per segment
    const segs = info.segs;
    if (segs > this.maxHdrs) {
      this.c[this.kDrop[P.BAD_GSO]!]! += segs;
      return;
    }
    const segSize = info.hdrLen + info.mss;
    const perMsg = this.init.gso ? Math.max(1, Math.min(UDP_MAX_SEGMENTS, Math.floor(MAX_UDP_PAYLOAD / segSize))) : 1;
    const msgsNeeded = Math.ceil(segs / perMsg);
    if (this.nhdr + segs > this.maxHdrs || this.niov + 2 * segs > this.maxIov || this.nmsg + msgsNeeded > this.maxMsgs) this.flush();
    let i = 0;
    while (i < segs) {
      const k = Math.min(perMsg, segs - i);
      const iovStart = this.niov;
      let bytes = 0;
      for (let j = 0; j < k; j++, i++) {
        const h = this.offHdrs + this.nhdr * HDR_SLOT;
        const segLen = i === segs - 1 ? info.lastLen : info.mss;
        P.writeTsoSegmentHeader(dv, pkt, info, i, dv, h, this.sum(pkt + info.hdrLen + i * info.mss, segLen));
        this.nhdr++;
        const iov = this.offIov + this.niov * N.IOVEC_SIZE;
        setPtr(dv, iov, this.base + h);
        setSize(dv, iov + 8, info.hdrLen);
        setPtr(dv, iov + 16, this.base + pkt + info.hdrLen + i * info.mss);
        setSize(dv, iov + 24, segLen);
        this.niov += 2;
        bytes += info.hdrLen + segLen;
      }
      this.addMessage(peer, iovStart, 2 * k, k > 1 ? segSize : 0, k, bytes);
    }
  }

  private addMessage(peer: number, iovStart: number, iovCount: number, gsoSize: number, segs: number, bytes: number): void {
    const dv = this.dv;
    const i = this.nmsg++;
    const m = this.offMsgs + i * N.MMSGHDR_SIZE;
    const name = this.offNames + i * N.SOCKADDR_IN_SIZE;
    dv.setUint16(name, N.AF_INET, true);
    dv.setUint16(name + 2, this.init.port);
    dv.setUint32(name + 4, peer);
    setPtr(dv, m + N.MSG_NAME, this.base + name);
    dv.setUint32(m + N.MSG_NAMELEN, N.SOCKADDR_IN_SIZE, true);
    setPtr(dv, m + N.MSG_IOV, this.base + this.offIov + iovStart * N.IOVEC_SIZE);
    setSize(dv, m + N.MSG_IOVLEN, iovCount);
    if (gsoSize > 0) {
      const cm = this.offCmsg + i * N.CMSG_SPACE_INT;
      setSize(dv, cm, N.CMSG_HDR + 2);
      dv.setInt32(cm + 8, N.SOL_UDP, true);
      dv.setInt32(cm + 12, N.UDP_SEGMENT, true);
      dv.setUint16(cm + 16, gsoSize, true);
      setPtr(dv, m + N.MSG_CONTROL, this.base + cm);
      setSize(dv, m + N.MSG_CONTROLLEN, N.CMSG_SPACE_INT);
    } else {
      setPtr(dv, m + N.MSG_CONTROL, 0);
      setSize(dv, m + N.MSG_CONTROLLEN, 0);
    }
    dv.setInt32(m + N.MSG_FLAGS, 0, true);
    this.msgSegs[i] = segs;
    this.msgBytes[i] = bytes;
  }

  /** Sends every pending message; the batch is empty afterwards. */
  private flush(): void {
    const { lib, dv } = this;
    let i = 0;
    while (i < this.nmsg) {
      const r = lib.sendmmsg(this.init.udpFd, this.base + this.offMsgs + i * N.MMSGHDR_SIZE, this.nmsg - i, N.MSG_DONTWAIT);
      this.c[this.kSendCalls]!++;
      if (r > 0) {
        let p = 0;
        let b = 0;
        for (let j = i; j < i + r; j++) {
          p += this.msgSegs[j]!;
          b += this.msgBytes[j]!;
        }
        this.c[this.kPackets]! += p;
        this.c[this.kBytes]! += b;
        i += r;
        continue;
      }
      const e = lib.errno();
      if (e === N.EINTR) continue;
      if (e === N.EAGAIN) {
        // Socket buffer full: wait until it drains (bounded, for the stop flag).
        if (this.stopping()) break;
        dv.setInt32(this.offPoll + 8, this.init.udpFd, true);
        dv.setInt16(this.offPoll + 12, N.POLLOUT, true);
        dv.setInt16(this.offPoll + 14, 0, true);
        lib.pollAt(this.base + this.offPoll + 8, 1, this.init.pollMs);
        continue;
      }
      const m = this.offMsgs + i * N.MMSGHDR_SIZE;
      if ((e === N.EINVAL || e === N.EIO || e === N.EMSGSIZE) && dv.getUint32(m + N.MSG_CONTROLLEN, true) !== 0) {
        // The kernel (or the route's MTU) refused segmentation offload for
        // this message: send its segments one by one.
        this.rep.warn(`gso:${e}`, `UDP segmentation offload refused (${lib.strerror(e)}); sending segments separately`);
        this.sendSegmentsSeparately(m);
        i++;
        continue;
      }
      this.c[this.kDropSend]! += this.msgSegs[i]!;
      this.rep.warn(`send:${e}`, `sending to ${this.peerOf(m)} failed: ${lib.strerror(e)} (errno ${e}); dropping`);
      i++;
    }
    this.nmsg = 0;
    this.niov = 0;
    this.nhdr = 0;
  }

  private peerOf(m: number): string {
    const name = this.offNames + ((m - this.offMsgs) / N.MMSGHDR_SIZE) * N.SOCKADDR_IN_SIZE;
    const a = this.dv.getUint32(name + 4);
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}:${this.init.port}`;
  }

  /** Re-sends a GSO message as single datagrams (iov pairs, header + payload). */
  private sendSegmentsSeparately(m: number): void {
    const { lib, dv } = this;
    const iovBase = Number(dv.getBigUint64(m + N.MSG_IOV, true));
    const iovLen = Number(dv.getBigUint64(m + N.MSG_IOVLEN, true));
    setSize(dv, m + N.MSG_CONTROLLEN, 0);
    setPtr(dv, m + N.MSG_CONTROL, 0);
    setSize(dv, m + N.MSG_IOVLEN, 2);
    let sent = 0;
    let bytes = 0;
    for (let k = 0; k + 1 < iovLen; k += 2) {
      const iov = iovBase + k * N.IOVEC_SIZE;
      setPtr(dv, m + N.MSG_IOV, iov);
      const r = lib.sendmsg(this.init.udpFd, this.base + m, N.MSG_DONTWAIT);
      if (r >= 0) {
        sent++;
        bytes += r;
      } else this.c[this.kDropSend]!++;
    }
    this.c[this.kPackets]! += sent;
    this.c[this.kBytes]! += bytes;
  }

  /** Writes flannel's ICMP net-unreachable for the packet back into the TUN. */
  private unreachable(pkt: number, len: number): void {
    const dv = this.dv;
    const out = this.offIcmp;
    for (let k = 0; k < N.VNET_HDR_LEN; k++) dv.setUint8(out + k, 0);
    const n = P.buildNetUnreachable(dv, pkt, len, dv, out + N.VNET_HDR_LEN, this.init.tunAddr);
    if (n === 0) return;
    const r = this.lib.write(this.init.tunFd, this.base + out, N.VNET_HDR_LEN + n);
    if (r > 0) this.c[this.kIcmp]!++;
  }
}

// ================================================================== rx

class RxLoop {
  private readonly lib = N.libc();
  private readonly a: N.NativeBlock;
  /** sum16 over the arena (Wasm SIMD when available), to verify TCP checksums before merging */
  private readonly sum: (off: number, len: number) => number;
  private readonly simd: boolean;
  private readonly dv: DataView;
  private readonly base: number;
  private readonly stop: Int32Array;
  private readonly c: Float64Array;
  private readonly rep = new Reporter();
  private readonly co: P.TcpCoalescer;

  private readonly slots: number;
  private readonly offSlots = 0;
  private readonly offMsgs: number;
  private readonly offIov: number;
  private readonly offCmsg: number;
  private readonly offOut: number;
  private readonly offWiov: number;
  private readonly offPoll: number;
  private readonly maxGroup = 64;

  private readonly kPackets: number;
  private readonly kBytes: number;
  private readonly kDatagrams: number;
  private readonly kRecvCalls: number;
  private readonly kWrites: number;
  private readonly kCoalesced: number;
  private readonly kTrunc: number;
  private readonly kWriteErr: number;
  private readonly kLocalSrc: number;
  private readonly kDrop: Int32Array;
  private locals = new Set<number>();
  private localsGen = 0;

  constructor(private readonly init: WorkerInit) {
    this.stop = new Int32Array(init.ctrl);
    this.c = new Float64Array(init.counters);
    this.kPackets = k.rx('packets');
    this.kBytes = k.rx('bytes');
    this.kDatagrams = k.rx('datagrams');
    this.kRecvCalls = k.rx('recvCalls');
    this.kWrites = k.rx('tunWrites');
    this.kCoalesced = k.rx('coalesced');
    this.kTrunc = k.rx('dropTruncated');
    this.kWriteErr = k.rx('dropTunWriteError');
    this.kLocalSrc = k.rx('dropLocalSource');
    this.kDrop = verdictSlots(k.rx);

    this.slots = Math.max(1, init.batch);
    this.offMsgs = this.offSlots + this.slots * SLOT_SIZE;
    this.offIov = this.offMsgs + this.slots * N.MMSGHDR_SIZE;
    this.offCmsg = this.offIov + this.slots * N.IOVEC_SIZE;
    this.offOut = this.offCmsg + this.slots * N.CMSG_SPACE_INT;
    this.offWiov = this.offOut + 256;
    this.offPoll = this.offWiov + (this.maxGroup + 2) * N.IOVEC_SIZE;
    const w = init.coalesce ? wasmArena(this.offPoll + 16) : null;
    if (w) {
      this.a = w;
      this.sum = w.sum16;
    } else {
      this.a = N.nativeBlock(this.lib, this.offPoll + 16);
      const dv = this.a.dv;
      this.sum = (off, len) => P.sum16(dv, off, len);
    }
    this.simd = w !== null;
    this.dv = this.a.dv;
    this.base = this.a.addr;
    this.co = new P.TcpCoalescer(this.dv, this.maxGroup);
    const dv = this.dv;
    for (let i = 0; i < this.slots; i++) {
      const m = this.offMsgs + i * N.MMSGHDR_SIZE;
      const iov = this.offIov + i * N.IOVEC_SIZE;
      setPtr(dv, iov, this.base + this.offSlots + i * SLOT_SIZE);
      setSize(dv, iov + 8, SLOT_SIZE);
      setPtr(dv, m + N.MSG_NAME, 0);
      setPtr(dv, m + N.MSG_IOV, this.base + iov);
      setSize(dv, m + N.MSG_IOVLEN, 1);
      setPtr(dv, m + N.MSG_CONTROL, this.base + this.offCmsg + i * N.CMSG_SPACE_INT);
    }
    // offOut[0..10): an all-zero virtio-net header for single packets;
    // offOut + 16: header scratch for merged packets.
  }

  private stopping(): boolean {
    return Atomics.load(this.stop, CTRL_STOP) !== 0;
  }

  private checkLocals(): void {
    if (Atomics.load(this.stop, CTRL_LOCALS_GEN) === this.localsGen || !this.init.updates) return;
    for (;;) {
      const m = receiveMessageOnPort(this.init.updates);
      if (!m) break;
      const u = m.message as LocalsUpdate;
      this.locals = new Set(u.addrs);
      this.localsGen = u.gen;
    }
  }

  run(): void {
    const { lib, dv } = this;
    const udpFd = this.init.udpFd;
    this.rep.post({ type: 'ready', simd: this.simd });
    while (!this.stopping()) {
      this.checkLocals();
      for (let i = 0; i < this.slots; i++) {
        const m = this.offMsgs + i * N.MMSGHDR_SIZE;
        setSize(dv, m + N.MSG_CONTROLLEN, N.CMSG_SPACE_INT);
        dv.setInt32(m + N.MSG_FLAGS, 0, true);
      }
      const r = lib.recvmmsg(udpFd, this.base + this.offMsgs, this.slots, N.MSG_DONTWAIT, 0);
      if (r < 0) {
        const e = lib.errno();
        if (e === N.EINTR) continue;
        if (e === N.EAGAIN) {
          dv.setInt32(this.offPoll, udpFd, true);
          dv.setInt16(this.offPoll + 4, N.POLLIN, true);
          dv.setInt16(this.offPoll + 6, 0, true);
          lib.pollAt(this.base + this.offPoll, 1, this.init.pollMs);
          continue;
        }
        if (e === N.EBADF) {
          this.rep.post({ type: 'fatal', errno: e, message: `recvmmsg on the UDP socket failed: ${lib.strerror(e)}` });
          return;
        }
        // e.g. ECONNREFUSED from an ICMP error queued on the socket: not fatal.
        this.rep.warn(`recv:${e}`, `recvmmsg on the UDP socket failed: ${lib.strerror(e)} (errno ${e})`);
        continue;
      }
      this.c[this.kRecvCalls]!++;
      for (let i = 0; i < r; i++) this.message(i);
      this.flushGroup();
    }
  }

  private message(i: number): void {
    const dv = this.dv;
    const m = this.offMsgs + i * N.MMSGHDR_SIZE;
    const len = dv.getUint32(m + N.MMSG_LEN, true);
    const flags = dv.getInt32(m + N.MSG_FLAGS, true);
    const slot = this.offSlots + i * SLOT_SIZE;
    if (flags & N.MSG_TRUNC) {
      this.c[this.kTrunc]!++;
      return;
    }
    let seg = len;
    const clen = dv.getUint32(m + N.MSG_CONTROLLEN, true);
    if (clen >= N.CMSG_HDR + 2) {
      const cm = this.offCmsg + i * N.CMSG_SPACE_INT;
      if (dv.getInt32(cm + 8, true) === N.SOL_UDP && dv.getInt32(cm + 12, true) === N.UDP_GRO) {
        const g = dv.getUint32(cm, true) >= N.CMSG_HDR + 4 ? dv.getInt32(cm + 16, true) : dv.getUint16(cm + 16, true);
        if (g > 0 && g < seg) seg = g;
      }
    }
    if (len === 0) {
      this.c[this.kDatagrams]!++;
      this.c[this.kDrop[P.SHORT]!]!++;
      return;
    }
    for (let o = 0; o < len; o += seg) this.datagram(slot + o, Math.min(seg, len - o));
  }

  private datagram(off: number, len: number): void {
    const dv = this.dv;
    this.c[this.kDatagrams]!++;
    const v = P.udpVerdict(dv, off, len);
    if (v !== P.OK) {
      this.c[this.kDrop[v]!]!++;
      return;
    }
    if (this.locals.has(dv.getUint32(off + 12))) {
      // A peer claiming to be this host: the kernel would drop it, but
      // flannel0 accepts local sources (for our ICMP errors), so we do.
      this.c[this.kLocalSrc]!++;
      return;
    }
    const plen = dv.getUint16(off + 2);
    if (this.init.coalesce && P.TcpCoalescer.eligible(dv, off, plen) && P.TcpCoalescer.checksumOk(dv, off, this.sum(off + 20, plen - 20))) {
      if (!this.co.append(off)) {
        this.flushGroup();
        this.co.start(off);
      }
      return;
    }
    this.flushGroup();
    this.writeSingle(off, plen);
  }

  private writeSingle(off: number, plen: number): void {
    const dv = this.dv;
    const w = this.offWiov;
    setPtr(dv, w, this.base + this.offOut);
    setSize(dv, w + 8, N.VNET_HDR_LEN);
    setPtr(dv, w + 16, this.base + off);
    setSize(dv, w + 24, plen);
    if (this.writev(2)) {
      this.c[this.kPackets]!++;
      this.c[this.kBytes]! += plen;
    } else this.c[this.kWriteErr]!++;
  }

  private flushGroup(): void {
    const co = this.co;
    const n = co.count;
    if (n === 0) return;
    if (n === 1) {
      co.reset();
      this.writeSingle(co.offs[0]!, co.lens[0]!);
      return;
    }
    const dv = this.dv;
    const h = this.offOut + 16;
    const hl = co.writeHeader(dv, h);
    const w = this.offWiov;
    setPtr(dv, w, this.base + h);
    setSize(dv, w + 8, hl);
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      setPtr(dv, w + (i + 1) * N.IOVEC_SIZE, this.base + co.payloadOff(i));
      setSize(dv, w + (i + 1) * N.IOVEC_SIZE + 8, co.payloadLen(i));
      bytes += co.lens[i]!;
    }
    co.reset();
    if (this.writev(n + 1)) {
      this.c[this.kPackets]! += n;
      this.c[this.kBytes]! += bytes;
      this.c[this.kCoalesced]! += n;
    } else this.c[this.kWriteErr]! += n;
  }

  /** writev to the TUN, waiting (bounded) when it pushes back. */
  private writev(iovcnt: number): boolean {
    const { lib, dv } = this;
    for (let tries = 0; tries < 50; tries++) {
      const r = lib.writev(this.init.tunFd, this.base + this.offWiov, iovcnt);
      this.c[this.kWrites]!++;
      if (r >= 0) return true;
      const e = lib.errno();
      if (e === N.EINTR) continue;
      if (e === N.EAGAIN || e === N.ENOBUFS || e === N.ENOMEM) {
        if (this.stopping()) return false;
        dv.setInt32(this.offPoll + 8, this.init.tunFd, true);
        dv.setInt16(this.offPoll + 12, N.POLLOUT, true);
        dv.setInt16(this.offPoll + 14, 0, true);
        lib.pollAt(this.base + this.offPoll + 8, 1, 10);
        continue;
      }
      this.rep.warn(`write:${e}`, `write to the TUN device failed: ${lib.strerror(e)} (errno ${e}); dropping`);
      return false;
    }
    return false;
  }
}

// ================================================================== entry

function main(): void {
  const init = workerData as WorkerInit;
  try {
    if (init.role === 'tx') new TxLoop(init).run();
    else new RxLoop(init).run();
  } catch (e) {
    parentPort?.postMessage({ type: 'fatal', errno: 0, message: `data path (${init.role}) crashed: ${(e as Error).stack ?? String(e)}` } satisfies WorkerReport);
  }
}

if (parentPort && workerData && (workerData as WorkerInit).role) main();
