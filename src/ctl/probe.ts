// Active reachability probes: ICMP echo to many addresses at once from one
// raw socket (needs CAP_NET_RAW), each matched by identifier and sequence,
// with one overall deadline. 100 peers cost one round trip, not 100.
// The socket is non-blocking and polled without waiting, so the event loop
// keeps running while probes are out.

import { randomInt } from 'node:crypto';
import { libc } from '../netlink/libc.js';
import { FlannelError } from '../errors.js';

const AF_INET = 2;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const IPPROTO_ICMP = 1;
const POLLIN = 1;
const ICMP_ECHO = 8;
const ICMP_ECHOREPLY = 0;
const ICMP_UNREACH = 3;

const ERRNO: Record<number, string> = { 1: 'EPERM (a firewall rule rejects it)', 13: 'EACCES', 101: 'ENETUNREACH (no route)', 113: 'EHOSTUNREACH', 22: 'EINVAL' };
const UNREACH: Record<number, string> = { 0: 'net unreachable', 1: 'host unreachable', 3: 'port unreachable', 9: 'net prohibited', 10: 'host prohibited', 13: 'administratively prohibited' };

export interface ProbeResult {
  readonly target: string;
  readonly ok: boolean;
  readonly rttMs?: number;
  /** why it failed: "no reply within 1.5 s", "sendto: ENETUNREACH", "host unreachable from 10.0.0.1" */
  readonly error?: string;
}

export class ProbeUnavailable extends FlannelError {
  static override readonly defaultCode: string = 'PROBE_UNAVAILABLE';
  override name = 'ProbeUnavailable';
}

function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

function echoRequest(id: number, seq: number): Buffer {
  const b = Buffer.alloc(8 + 16);
  b[0] = ICMP_ECHO;
  b.writeUInt16BE(id, 4);
  b.writeUInt16BE(seq, 6);
  b.write('flannelctl-probe', 8, 'latin1');
  b.writeUInt16BE(checksum(b), 2);
  return b;
}

function sockaddrIn(ip: string): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  ip.split('.').forEach((o, i) => (b[4 + i] = Number(o)));
  return b;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Pings every target once (and once more halfway through the deadline for
 * those still silent). Throws ProbeUnavailable when no raw socket can be
 * opened (not root).
 */
export async function pingAll(targets: readonly string[], timeoutMs: number): Promise<Map<string, ProbeResult>> {
  const out = new Map<string, ProbeResult>();
  const uniq = [...new Set(targets)];
  if (uniq.length === 0) return out;
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (fd < 0) throw new ProbeUnavailable(`cannot open an ICMP raw socket (errno ${c.errno()}); run as root`);
  const id = randomInt(1, 0xffff);
  const sentAt = new Map<number, number>();
  const pending = new Set(uniq.map((_, i) => i));
  const send = (i: number) => {
    const pkt = echoRequest(id, i);
    const addr = sockaddrIn(uniq[i]!);
    if (!sentAt.has(i)) sentAt.set(i, performance.now());
    if (c.sendto(fd, pkt, pkt.length, 0, addr, addr.length) < 0) {
      const e = c.errno();
      pending.delete(i);
      out.set(uniq[i]!, { target: uniq[i]!, ok: false, error: `sendto: ${ERRNO[e] ?? `errno ${e}`}` });
    }
  };
  try {
    for (const i of [...pending]) send(i);
    const start = performance.now();
    let resent = false;
    const pfd = Buffer.alloc(8);
    const buf = Buffer.alloc(2048);
    while (pending.size > 0) {
      const now = performance.now();
      if (now - start > timeoutMs) break;
      if (!resent && now - start > timeoutMs / 2) {
        resent = true;
        for (const i of [...pending]) send(i);
      }
      pfd.writeInt32LE(fd, 0);
      pfd.writeInt16LE(POLLIN, 4);
      pfd.writeInt16LE(0, 6);
      if (c.poll(pfd, 1, 0) <= 0) {
        await sleep(5);
        continue;
      }
      for (;;) {
        const n = c.recv(fd, buf, buf.length, 0);
        if (n <= 0) break;
        const ihl = (buf[0]! & 0x0f) * 4;
        if (n < ihl + 8) continue;
        const from = `${buf[12]}.${buf[13]}.${buf[14]}.${buf[15]}`;
        const type = buf[ihl]!;
        if (type === ICMP_ECHOREPLY) {
          const rid = buf.readUInt16BE(ihl + 4);
          const seq = buf.readUInt16BE(ihl + 6);
          if (rid !== id || !pending.has(seq) || uniq[seq] !== from) continue;
          pending.delete(seq);
          out.set(from, { target: from, ok: true, rttMs: Number((performance.now() - sentAt.get(seq)!).toFixed(2)) });
        } else if (type === ICMP_UNREACH) {
          // the quoted original: IP header, then our echo request's first 8 bytes
          const inner = ihl + 8;
          if (n < inner + 20) continue;
          const iihl = (buf[inner]! & 0x0f) * 4;
          if (n < inner + iihl + 8 || buf[inner + iihl] !== ICMP_ECHO) continue;
          const rid = buf.readUInt16BE(inner + iihl + 4);
          const seq = buf.readUInt16BE(inner + iihl + 6);
          if (rid !== id || !pending.has(seq)) continue;
          pending.delete(seq);
          out.set(uniq[seq]!, { target: uniq[seq]!, ok: false, error: `${UNREACH[buf[ihl + 1]!] ?? `unreachable (code ${buf[ihl + 1]})`} (ICMP from ${from})` });
        }
      }
    }
  } finally {
    c.close(fd);
  }
  for (const i of pending) out.set(uniq[i]!, { target: uniq[i]!, ok: false, error: `no reply within ${(timeoutMs / 1000).toFixed(1)} s` });
  return out;
}
