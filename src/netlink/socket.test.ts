// Transport behaviour. The first group scripts the kernel through a fake libc
// (sequence matching, ACK/error handling, dump retry, batching, overruns,
// timeouts); the second talks to the real kernel, read-only, in whatever
// namespace the test runs in, so it needs no privileges and changes nothing.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as C from './constants.js';
import { encodeMessage, parseMessages, type NlMessage } from './codec.js';
import { NetlinkError } from './errors.js';
import type { Libc } from './libc.js';
import { NetlinkSocket } from './socket.js';
import { NetlinkSubscriber } from './subscriber.js';
import { exitDelay } from '../testing/exit-timer.js';
import { decodeLink } from './rtnl.js';
import { dumpLinksRequest, dumpNeighsRequest, getLinkRequest, newNeighRequest } from './requests.js';

const EAGAIN = 11;
const ENOBUFS = 105;

type Reply = Buffer | 'ENOBUFS';

/**
 * A libc whose "kernel" is a script: every sendto() hands the datagram to
 * `respond`, whose replies are queued for recv(). poll() never sleeps: an
 * empty queue is an immediate timeout, so timeout paths run instantly.
 */
class FakeKernel {
  readonly sent: Buffer[] = [];
  readonly queue: Reply[] = [];
  private lastErrno = 0;
  constructor(private readonly respond: (msgs: NlMessage[], raw: Buffer) => Reply[]) {}

  libc(): Libc {
    return {
      socket: () => 3,
      bind: () => 0,
      getsockname: (_fd, addr) => {
        addr.writeUInt32LE(4242, 4);
        return 0;
      },
      setsockopt: () => 0,
      sendto: (_fd, buf, len) => {
        const copy = Buffer.from(buf.subarray(0, len));
        this.sent.push(copy);
        this.queue.push(...this.respond(parseMessages(copy), copy));
        return len;
      },
      recv: (_fd, buf, len, flags) => {
        const next = this.queue.shift();
        if (next === undefined) {
          this.lastErrno = EAGAIN;
          return -1;
        }
        if (next === 'ENOBUFS') {
          this.lastErrno = ENOBUFS;
          return -1;
        }
        next.copy(buf, 0, 0, Math.min(len, next.length));
        return flags & C.MSG_TRUNC ? next.length : Math.min(len, next.length);
      },
      poll: (fds) => {
        if (this.queue.length === 0) return 0;
        fds.writeInt16LE(C.POLLIN, 6);
        return 1;
      },
      close: () => 0,
      errno: () => this.lastErrno,
    };
  }
}

function ack(seq: number, errno = 0, extAck?: string): Buffer {
  const err = Buffer.alloc(4);
  err.writeInt32LE(-errno, 0);
  const orig = Buffer.alloc(16);
  orig.writeUInt32LE(16, 0);
  orig.writeUInt32LE(seq, 8);
  const parts = [err, orig];
  let flags = C.NLM_F_CAPPED;
  if (extAck) {
    const text = Buffer.from(extAck + '\0');
    const tlv = Buffer.alloc((4 + text.length + 3) & ~3);
    tlv.writeUInt16LE(4 + text.length, 0);
    tlv.writeUInt16LE(C.NLMSGERR_ATTR_MSG, 2);
    text.copy(tlv, 4);
    parts.push(tlv);
    flags |= C.NLM_F_ACK_TLVS;
  }
  return encodeMessage(C.NLMSG_ERROR, flags, seq, 0, parts);
}

function done(seq: number, flags = C.NLM_F_MULTI, errno = 0): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(-errno, 0);
  return encodeMessage(C.NLMSG_DONE, flags, seq, 0, [b]);
}

function linkMsg(seq: number, index: number, name: string, flags = C.NLM_F_MULTI): Buffer {
  const ifi = Buffer.alloc(16);
  ifi.writeInt32LE(index, 4);
  const nameBuf = Buffer.from(name + '\0');
  const attr = Buffer.alloc((4 + nameBuf.length + 3) & ~3);
  attr.writeUInt16LE(4 + nameBuf.length, 0);
  attr.writeUInt16LE(C.IFLA_IFNAME, 2);
  nameBuf.copy(attr, 4);
  return encodeMessage(C.RTM_NEWLINK, flags, seq, 0, [ifi, attr]);
}

const neighReq = (i: number) =>
  newNeighRequest({ ifindex: 5, ip: `10.1.${i >> 8}.${i & 255}`, mac: '02:00:00:00:00:01' });

describe('transport (scripted kernel)', () => {
  test('request: stale replies are skipped, data before the ACK is returned', () => {
    const fake = new FakeKernel(([m]) => [linkMsg(m!.header.seq - 1, 9, 'stale', 0), Buffer.concat([linkMsg(m!.header.seq, 1, 'lo', 0), ack(m!.header.seq)])]);
    const sock = NetlinkSocket.open({ libc: fake.libc() });
    assert.equal(sock.portId, 4242);
    const replies = sock.request(getLinkRequest({ name: 'lo' }));
    assert.deepEqual(replies.map((r) => decodeLink(r).name), ['lo']);
    // Flags went out with REQUEST|ACK.
    assert.equal(fake.sent[0]!.readUInt16LE(6), C.NLM_F_REQUEST | C.NLM_F_ACK);
  });

  test('request: negative ACK becomes NetlinkError with errno, code, op and kernel text', () => {
    const fake = new FakeKernel(([m]) => [ack(m!.header.seq, 17, 'Neighbour entry already exists')]);
    const sock = NetlinkSocket.open({ libc: fake.libc() });
    const req = newNeighRequest({ ifindex: 5, ip: '10.1.0.1', mac: '02:00:00:00:00:01' }, 'create');
    assert.throws(
      () => sock.request(req),
      (err: unknown) => {
        assert.ok(err instanceof NetlinkError);
        assert.equal(err.errno, 17);
        assert.equal(err.code, 'EEXIST');
        assert.equal(err.op, 'create neigh 10.1.0.1 lladdr 02:00:00:00:00:01 dev #5');
        assert.equal(err.extAck, 'Neighbour entry already exists');
        return true;
      },
    );
  });

  test('request: no answer is ETIMEDOUT; a closed socket is EBADF', () => {
    const fake = new FakeKernel(() => []);
    const sock = NetlinkSocket.open({ libc: fake.libc(), timeoutMs: 50 });
    assert.throws(() => sock.request(getLinkRequest({ index: 1 })), (e: unknown) => e instanceof NetlinkError && e.code === 'ETIMEDOUT');
    sock.close();
    assert.throws(() => sock.request(getLinkRequest({ index: 1 })), (e: unknown) => e instanceof NetlinkError && e.code === 'EBADF');
  });

  test('request: a datagram larger than the receive buffer is EMSGSIZE, not a silent cut', () => {
    const fake = new FakeKernel(() => [Buffer.alloc(70000)]);
    const sock = NetlinkSocket.open({ libc: fake.libc() });
    assert.throws(() => sock.request(getLinkRequest({ index: 1 })), (e: unknown) => e instanceof NetlinkError && e.code === 'EMSGSIZE');
  });

  test('dump: multipart across datagrams until NLMSG_DONE, no ACK flag sent', () => {
    const fake = new FakeKernel(([m]) => {
      const s = m!.header.seq;
      return [Buffer.concat([linkMsg(s, 1, 'lo'), linkMsg(s, 2, 'eth0')]), Buffer.concat([linkMsg(s, 3, 'flannel.1'), done(s)])];
    });
    const sock = NetlinkSocket.open({ libc: fake.libc() });
    const links = sock.dump(dumpLinksRequest()).map(decodeLink);
    assert.deepEqual(links.map((l) => l.name), ['lo', 'eth0', 'flannel.1']);
    assert.equal(fake.sent[0]!.readUInt16LE(6), C.NLM_F_REQUEST | C.NLM_F_DUMP);
  });

  test('dump: NLM_F_DUMP_INTR triggers a bounded re-dump', () => {
    let calls = 0;
    const fake = new FakeKernel(([m]) => {
      const s = m!.header.seq;
      calls++;
      if (calls === 1) return [Buffer.concat([linkMsg(s, 1, 'old', C.NLM_F_MULTI | C.NLM_F_DUMP_INTR), done(s, C.NLM_F_MULTI | C.NLM_F_DUMP_INTR)])];
      return [Buffer.concat([linkMsg(s, 1, 'new'), done(s)])];
    });
    const sock = NetlinkSocket.open({ libc: fake.libc() });
    assert.deepEqual(sock.dump(dumpLinksRequest()).map((m) => decodeLink(m).name), ['new']);
    assert.equal(calls, 2);

    const always = new FakeKernel(([m]) => [done(m!.header.seq, C.NLM_F_MULTI | C.NLM_F_DUMP_INTR)]);
    const sock2 = NetlinkSocket.open({ libc: always.libc() });
    assert.throws(() => sock2.dump(dumpLinksRequest(), { maxRetries: 2 }), (e: unknown) => e instanceof NetlinkError && e.code === 'EINTR');
    assert.equal(always.sent.length, 3);
  });

  test('dump: strict checking on sends the filtered body; refused (old kernel) or turned off sends the unfiltered one', () => {
    const req = dumpNeighsRequest(C.AF_INET, 5);
    const bodies = (sent: Buffer[]) => sent.map((b) => b.subarray(16).toString('hex'));
    const strict = new FakeKernel(([m]) => [done(m!.header.seq)]);
    const opts: Array<[number, number]> = [];
    const lib = strict.libc();
    const s1 = NetlinkSocket.open({ libc: { ...lib, setsockopt: (fd, level, name, v, l) => (opts.push([level, name]), lib.setsockopt(fd, level, name, v, l)) } });
    assert.equal(s1.strictCheck, true);
    assert.ok(opts.some(([lv, n]) => lv === C.SOL_NETLINK && n === C.NETLINK_GET_STRICT_CHK));
    s1.dump(req);
    assert.deepEqual(bodies(strict.sent), [req.body.toString('hex')]);

    const old = new FakeKernel(([m]) => [done(m!.header.seq)]);
    const oldLib = old.libc();
    const s2 = NetlinkSocket.open({ libc: { ...oldLib, setsockopt: (fd, level, name, v, l) => (level === C.SOL_NETLINK && name === C.NETLINK_GET_STRICT_CHK ? -1 : oldLib.setsockopt(fd, level, name, v, l)) } });
    assert.equal(s2.strictCheck, false);
    s2.dump(req);
    assert.deepEqual(bodies(old.sent), [req.unfilteredBody!.toString('hex')]);

    const off = new FakeKernel(([m]) => [done(m!.header.seq)]);
    const s3 = NetlinkSocket.open({ libc: off.libc(), strictCheck: false });
    assert.equal(s3.strictCheck, false);
    s3.dump(req);
    assert.deepEqual(bodies(off.sent), [req.unfilteredBody!.toString('hex')]);
  });

  test('dump: an error in NLMSG_DONE or NLMSG_ERROR is raised', () => {
    const fake = new FakeKernel(([m]) => [done(m!.header.seq, C.NLM_F_MULTI, 22)]);
    const sock = NetlinkSocket.open({ libc: fake.libc() });
    assert.throws(() => sock.dump(dumpNeighsRequest()), (e: unknown) => e instanceof NetlinkError && e.code === 'EINVAL');
    const fake2 = new FakeKernel(([m]) => [ack(m!.header.seq, 95, 'Dump not supported')]);
    const sock2 = NetlinkSocket.open({ libc: fake2.libc() });
    assert.throws(() => sock2.dump(dumpNeighsRequest()), (e: unknown) => e instanceof NetlinkError && e.code === 'EOPNOTSUPP' && e.extAck === 'Dump not supported');
    assert.throws(() => sock2.dump(getLinkRequest({ index: 1 })), TypeError);
  });

  test('batch: packs requests into few datagrams and returns per-request outcomes in order', () => {
    const fake = new FakeKernel((msgs) =>
      // One ACK datagram per message, as the kernel does; #3 fails.
      msgs.map((m) => ack(m.header.seq, m.payload.readInt32LE(4) === 5 && m.payload.subarray(16, 20).equals(Buffer.from([10, 1, 0, 3])) ? 19 : 0)),
    );
    const sock = NetlinkSocket.open({ libc: fake.libc() });
    const reqs = Array.from({ length: 600 }, (_, i) => neighReq(i));
    const results = sock.batch(reqs, { chunkSize: 256 });
    assert.equal(fake.sent.length, 3);
    assert.deepEqual(fake.sent.map((b) => parseMessages(b).length), [256, 256, 88]);
    assert.equal(results.length, 600);
    assert.equal(results.filter((r) => r.ok).length, 599);
    const bad = results[3]!;
    assert.ok(!bad.ok && bad.error.code === 'ENODEV' && bad.error.op.includes('10.1.0.3'));
    // Every message carried NLM_F_ACK and a distinct sequence number.
    const seqs = fake.sent.flatMap((b) => parseMessages(b).map((m) => (assert.ok(m.header.flags & C.NLM_F_ACK), m.header.seq)));
    assert.equal(new Set(seqs).size, 600);
  });

  test('batch: lost ACKs after ENOBUFS are reported per request, the rest still count', () => {
    const fake = new FakeKernel((msgs) => [...msgs.slice(0, 10).map((m) => ack(m.header.seq)), 'ENOBUFS', ...msgs.slice(20).map((m) => ack(m.header.seq))]);
    const sock = NetlinkSocket.open({ libc: fake.libc() });
    const results = sock.batch(Array.from({ length: 30 }, (_, i) => neighReq(i)));
    assert.equal(results.filter((r) => r.ok).length, 20);
    for (let i = 10; i < 20; i++) {
      const r = results[i]!;
      assert.ok(!r.ok && r.error.code === 'ENOBUFS', `request ${i}`);
    }
  });

  test('receive: ENOBUFS is an overrun result, silence is a timeout', () => {
    const fake = new FakeKernel(() => []);
    const sock = NetlinkSocket.open({ libc: fake.libc() });
    fake.queue.push('ENOBUFS');
    assert.deepEqual(sock.receive(0), { kind: 'overrun' });
    assert.deepEqual(sock.receive(0), { kind: 'timeout' });
  });
});

/** The scripted libc with the pool calls too; `failSend`: the next sendtoAsync returns -1 and the sync retry fails with that errno. */
function asyncLibc(fake: FakeKernel, failSend?: { errno: number }): Libc {
  const lib = fake.libc();
  let errno = 0;
  return {
    ...lib,
    errno: () => errno || lib.errno(),
    sendto: (...a) => {
      if (failSend) {
        errno = failSend.errno;
        return -1;
      }
      return lib.sendto(...a);
    },
    sendtoAsync: async (...a) => (failSend ? -1 : lib.sendto(...a)),
    recvAsync: async (...a) => lib.recv(...a),
    pollAsync: async (...a) => lib.poll(...a),
  };
}

describe('transport (scripted kernel, async driver)', () => {
  test('request, dump and batch give what the sync driver gives', async () => {
    const fake = new FakeKernel((msgs) =>
      msgs.flatMap((m) => (m.header.type === C.RTM_GETLINK && (m.header.flags & C.NLM_F_DUMP) === C.NLM_F_DUMP ? [Buffer.concat([linkMsg(m.header.seq, 1, 'lo'), linkMsg(m.header.seq, 2, 'eth0')]), done(m.header.seq)] : [ack(m.header.seq, m.header.seq % 2 ? 0 : 19)])),
    );
    const sock = NetlinkSocket.open({ libc: asyncLibc(fake) });
    const links = await sock.dumpAsync(dumpLinksRequest());
    assert.deepEqual(links.map((m) => decodeLink(m).name), ['lo', 'eth0']);
    const rs = await sock.batchAsync(Array.from({ length: 600 }, (_, i) => neighReq(i)));
    assert.equal(rs.length, 600);
    assert.equal(rs.filter((r) => r.ok).length, 300);
    assert.equal(fake.sent.length, 1 + 3);
    const r = await sock.requestAsync(getLinkRequest({ index: 1 })).then(
      () => 'ok',
      (e: unknown) => (e as NetlinkError).code,
    );
    assert.ok(r === 'ok' || r === 'ENODEV');
  });

  test('a failed pool sendto() learns errno from one synchronous retry', async () => {
    const fake = new FakeKernel((msgs) => msgs.map((m) => ack(m.header.seq)));
    const sock = NetlinkSocket.open({ libc: asyncLibc(fake, { errno: 1 }) });
    await assert.rejects(sock.requestAsync(getLinkRequest({ index: 1 })), (e: unknown) => e instanceof NetlinkError && e.code === 'EPERM' && e.op.includes('sendto'));
    assert.equal(fake.sent.length, 0);
  });

  test('no answer is ETIMEDOUT', async () => {
    const fake = new FakeKernel(() => []);
    const sock = NetlinkSocket.open({ libc: asyncLibc(fake) });
    const t0 = Date.now();
    await assert.rejects(sock.requestAsync(getLinkRequest({ index: 1 }), { timeoutMs: 30 }), (e: unknown) => e instanceof NetlinkError && e.code === 'ETIMEDOUT');
    assert.ok(Date.now() - t0 < 1000);
  });
});

describe('transport (real kernel, read-only)', { skip: process.platform !== 'linux' ? 'Linux only' : false }, () => {
  test('dump links, get by name, ENODEV for a missing name, batch of gets', () => {
    const sock = NetlinkSocket.open();
    try {
      assert.ok(sock.portId !== 0);
      const links = sock.dump(dumpLinksRequest()).map(decodeLink);
      const lo = links.find((l) => l.name === 'lo');
      assert.ok(lo, 'every namespace has lo');
      const got = sock.request(getLinkRequest({ name: 'lo' })).map(decodeLink);
      assert.equal(got[0]!.index, lo.index);
      assert.throws(
        () => sock.request(getLinkRequest({ name: 'ftsnl-none0' })),
        (e: unknown) => e instanceof NetlinkError && e.errno === 19 && e.code === 'ENODEV' && e.op === 'get link ftsnl-none0',
      );
      const results = sock.batch([getLinkRequest({ name: 'lo' }), getLinkRequest({ name: 'ftsnl-none0' }), getLinkRequest({ index: lo.index })]);
      assert.deepEqual(results.map((r) => r.ok), [true, false, true]);
      assert.equal(results[0]!.ok && decodeLink(results[0]!.messages[0]!).name, 'lo');
      assert.equal(sock.receive(20).kind, 'timeout');
    } finally {
      sock.close();
    }
  });

  test('async driver and AsyncTransport: dump, get, batch; requests run one at a time, in order', async () => {
    const { AsyncTransport } = await import('./transport.js');
    const t = AsyncTransport.open();
    try {
      assert.ok(t.portId() !== 0);
      const order: number[] = [];
      const ps = [
        t.dump(dumpLinksRequest()).then((ms) => (order.push(0), ms)),
        t.request(getLinkRequest({ name: 'lo' })).then((ms) => (order.push(1), ms)),
        t.request(getLinkRequest({ name: 'ftsnl-none0' })).then(
          () => order.push(2),
          (e: unknown) => (order.push(2), assert.ok(e instanceof NetlinkError && e.code === 'ENODEV')),
        ),
        t.batch([getLinkRequest({ name: 'lo' }), getLinkRequest({ name: 'ftsnl-none0' })]).then((rs) => (order.push(3), rs)),
      ] as const;
      const [links, lo, , rs] = await Promise.all(ps);
      assert.ok(links.map((m) => decodeLink(m).name).includes('lo'));
      assert.equal(decodeLink(lo[0]!).name, 'lo');
      assert.deepEqual(rs.map((r) => r.ok), [true, false]);
      assert.deepEqual(order, [0, 1, 2, 3]);
    } finally {
      t.close();
    }
    await assert.rejects(t.dump(dumpLinksRequest()), /closed/);
  });

  test('subscriber starts, and stop() ends its pool poll() at once (the eventfd), not after the interval', async () => {
    const sub = await NetlinkSubscriber.start({ onEvent: () => {}, pollIntervalMs: 5000 });
    assert.ok(sub.portId !== 0);
    await new Promise((r) => setTimeout(r, 20));
    const t0 = performance.now();
    await sub.stop();
    assert.ok(performance.now() - t0 < 1000);
    await sub.stop(); // idempotent
  });

  test('process.exit() does not wait for a subscriber\'s pool poll()', () => {
    const r = exitDelay({ S: new URL('./subscriber.js', import.meta.url) }, 'await S.NetlinkSubscriber.start({ onEvent: () => {}, pollIntervalMs: 5000 });');
    assert.equal(r.status, 0, r.stderr);
    // Node's exit joins the pool's threads: one still in poll() would hold it for the 5 s interval
    assert.ok(r.exitMs < 2000, `process.exit() took ${r.exitMs} ms`);
  });
});
