// sd_notify over real unix datagram sockets. Each test owns the receiving
// socket (standing in for systemd), bound in a temp dir or in the abstract
// namespace, and reads what sdNotify sent with a bounded poll().
// Receiver addresses are built here by hand, not with sockaddrUn(), so the
// tests check the address encoding instead of agreeing with it.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MSG_DONTWAIT, POLLIN, SOCK_CLOEXEC, SOCK_NONBLOCK } from '../netlink/constants.js';
import { libc } from '../netlink/libc.js';
import { AF_UNIX, SOCK_DGRAM, SOCKADDR_UN_SIZE, SdNotifyError, sdNotify, sockaddrUn } from './sdnotify.js';

const lib = libc();
const dir = mkdtempSync(join(tmpdir(), 'fts-sdnotify-'));
const open = new Set<number>();
after(() => {
  for (const fd of open) lib.close(fd);
  rmSync(dir, { recursive: true, force: true });
});

function dgramSocket(): number {
  const fd = lib.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  assert.ok(fd >= 0, `socket: errno ${lib.errno()}`);
  open.add(fd);
  return fd;
}

function closeFd(fd: number): void {
  lib.close(fd);
  open.delete(fd);
}

/** sockaddr_un for a filesystem path, length including the NUL. */
function pathAddr(path: string): [Buffer, number] {
  const b = Buffer.alloc(SOCKADDR_UN_SIZE);
  b.writeUInt16LE(AF_UNIX, 0);
  const n = b.write(path, 2, 'utf8');
  return [b, 2 + n + 1];
}

/** sockaddr_un for an abstract name: NUL, then the name; `padded` uses the whole struct. */
function abstractAddr(name: string, padded = false): [Buffer, number] {
  const b = Buffer.alloc(SOCKADDR_UN_SIZE);
  b.writeUInt16LE(AF_UNIX, 0);
  const n = b.write(name, 3, 'utf8');
  return [b, padded ? SOCKADDR_UN_SIZE : 2 + 1 + n];
}

function receiver([addr, len]: [Buffer, number]): number {
  const fd = dgramSocket();
  assert.equal(lib.bind(fd, addr, len), 0, `bind: errno ${lib.errno()}`);
  return fd;
}

/** The next datagram on fd, or null if none arrives within timeoutMs. */
function recvOne(fd: number, timeoutMs = 1000): Buffer | null {
  const pfd = Buffer.alloc(8); // struct pollfd { int fd; short events; short revents; }
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(POLLIN, 4);
  const r = lib.poll(pfd, 1, timeoutMs);
  assert.ok(r >= 0, `poll: errno ${lib.errno()}`);
  if (r === 0) return null;
  const buf = Buffer.alloc(4096);
  const n = lib.recv(fd, buf, buf.length, MSG_DONTWAIT);
  assert.ok(n >= 0, `recv: errno ${lib.errno()}`);
  return buf.subarray(0, n);
}

const uniq = () => randomBytes(6).toString('hex');

test('filesystem socket: exactly one datagram, exactly "READY=1"', () => {
  const path = join(dir, `notify-${uniq()}.sock`);
  const rx = receiver(pathAddr(path));
  assert.equal(sdNotify(path, 'READY=1'), true);
  const got = recvOne(rx);
  assert.ok(got, 'no datagram received');
  assert.equal(got.toString('latin1'), 'READY=1');
  assert.equal(got.length, 7);
  assert.equal(recvOne(rx, 50), null, 'a second datagram arrived');
  closeFd(rx);
});

test('abstract socket: "@name" reaches a socket bound to NUL+name with the exact length', () => {
  const name = `flannel-ts-test-${process.pid}-${uniq()}`;
  const rx = receiver(abstractAddr(name));
  assert.equal(sdNotify(`@${name}`, 'READY=1'), true);
  assert.equal(recvOne(rx)?.toString('latin1'), 'READY=1');
  assert.equal(recvOne(rx, 50), null);
  closeFd(rx);
});

test('abstract socket: the address length covers only the name (a NUL-padded name is a different socket)', () => {
  const name = `flannel-ts-pad-${process.pid}-${uniq()}`;
  // Bound with the whole 108-byte sun_path, i.e. the name plus trailing NULs.
  const rx = receiver(abstractAddr(name, true));
  assert.throws(
    () => sdNotify(`@${name}`, 'READY=1'),
    (e: unknown) => e instanceof SdNotifyError && e.code === 'ECONNREFUSED',
  );
  assert.equal(recvOne(rx, 50), null);
  closeFd(rx);
  const { addr, len } = sockaddrUn(`@${name}`);
  assert.equal(len, 3 + Buffer.byteLength(name));
  assert.equal(addr[2], 0);
  assert.equal(addr.subarray(3, len).toString('utf8'), name);
});

test('multi-line state is sent as one datagram, byte for byte', () => {
  const path = join(dir, `notify-${uniq()}.sock`);
  const rx = receiver(pathAddr(path));
  const state = 'READY=1\nSTATUS=subnet 10.244.1.0/24 ✓\nMAINPID=' + process.pid;
  assert.equal(sdNotify(path, state), true);
  assert.deepEqual(recvOne(rx), Buffer.from(state, 'utf8'));
  closeFd(rx);
});

test('no NOTIFY_SOCKET: false and nothing sent; process.env is not consulted', () => {
  const path = join(dir, `notify-${uniq()}.sock`);
  const rx = receiver(pathAddr(path));
  const saved = process.env.NOTIFY_SOCKET;
  process.env.NOTIFY_SOCKET = path;
  try {
    assert.equal(sdNotify(undefined, 'READY=1'), false);
    assert.equal(sdNotify('', 'READY=1'), false);
  } finally {
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
  }
  assert.equal(recvOne(rx, 100), null);
  closeFd(rx);
});

test('socket path that does not exist: SdNotifyError naming the path and ENOENT, no crash', () => {
  const path = join(dir, 'missing', 'notify.sock');
  assert.throws(
    () => sdNotify(path, 'READY=1'),
    (e: unknown) =>
      e instanceof SdNotifyError &&
      e.code === 'ENOENT' &&
      e.socketPath === path &&
      e.message.includes(path) &&
      /does not exist/.test(e.message),
  );
});

test('nobody listening (stale socket file, or a regular file): ECONNREFUSED', () => {
  const path = join(dir, `stale-${uniq()}.sock`);
  closeFd(receiver(pathAddr(path))); // the file stays behind
  assert.throws(() => sdNotify(path, 'READY=1'), (e: unknown) => e instanceof SdNotifyError && e.code === 'ECONNREFUSED' && e.message.includes(path));
  const file = join(dir, `plain-${uniq()}`);
  writeFileSync(file, '');
  assert.throws(() => sdNotify(file, 'READY=1'), (e: unknown) => e instanceof SdNotifyError && e.code === 'ECONNREFUSED');
});

test('a receiver whose queue is full makes sdNotify fail at once with EAGAIN instead of blocking', () => {
  const path = join(dir, `full-${uniq()}.sock`);
  const rx = receiver(pathAddr(path));
  const [addr, len] = pathAddr(path);
  const one = Buffer.from('x');
  // Fill the receive queue: senders in turn, each until it is refused, until
  // even a fresh sender's first datagram is refused.
  let full = false;
  for (let s = 0; s < 64 && !full; s++) {
    const tx = dgramSocket();
    for (let i = 0; ; i++) {
      if (lib.sendto(tx, one, 1, MSG_DONTWAIT, addr, len) < 0) {
        full = i === 0;
        break;
      }
    }
    closeFd(tx);
  }
  assert.ok(full, 'could not fill the receive queue');
  const t0 = performance.now();
  assert.throws(
    () => sdNotify(path, 'READY=1'),
    (e: unknown) => e instanceof SdNotifyError && e.code === 'EAGAIN' && /queue is full/.test(e.message),
  );
  assert.ok(performance.now() - t0 < 500, 'sdNotify waited for the receiver');
  closeFd(rx);
});

test('addresses systemd would never give are rejected before any syscall', () => {
  const cases: [string, RegExp][] = [
    ['run/notify', /absolute path or start with "@"/],
    ['@', /name after "@" is empty/],
    ['/a\0b', /NUL byte/],
    ['/' + 'x'.repeat(108), /109 bytes; at most 108/],
    ['@' + 'y'.repeat(108), /108 bytes; at most 107/],
  ];
  for (const [address, re] of cases) {
    assert.throws(() => sdNotify(address, 'READY=1'), (e: unknown) => e instanceof SdNotifyError && re.test(e.message) && e.socketPath === address, address);
  }
  assert.throws(() => sdNotify('/run/x', ''), /state to send is empty/);
});

test('the file descriptor is closed on success and on failure', () => {
  const path = join(dir, `notify-${uniq()}.sock`);
  const rx = receiver(pathAddr(path));
  const fds = () => readdirSync('/proc/self/fd').length;
  const before = fds();
  for (let i = 0; i < 50; i++) {
    assert.equal(sdNotify(path, 'READY=1'), true);
    assert.equal(recvOne(rx)?.toString(), 'READY=1');
    assert.throws(() => sdNotify(join(dir, 'nope.sock'), 'READY=1'), SdNotifyError);
  }
  assert.equal(fds(), before);
  closeFd(rx);
});

test('EINTR is retried; a short send is an error (fake libc)', () => {
  const real = libc();
  let calls = 0;
  const eintr = { ...real, sendto: () => (++calls < 3 ? -1 : 7), errno: () => 4, socket: () => 1000, close: () => 0 };
  assert.equal(sdNotify('/run/x', 'READY=1', eintr), true);
  assert.equal(calls, 3);
  const short = { ...real, sendto: () => 3, socket: () => 1000, close: () => 0 };
  assert.throws(() => sdNotify('/run/x', 'READY=1', short), /sent 3 of 7 bytes/);
});
