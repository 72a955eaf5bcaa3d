// systemd readiness notification (the sd_notify protocol) for Type=notify units.
//
// The protocol: one datagram on an AF_UNIX/SOCK_DGRAM socket, addressed to
// the path systemd put in $NOTIFY_SOCKET, whose payload is newline-separated
// VAR=value assignments ("READY=1"). A leading "@" in the address means a
// socket in the abstract namespace: the first byte of sun_path is NUL, and
// the address length must cover only the bytes of the name, because abstract
// names are compared over the whole given length, trailing NULs included.
//
// Node has no unix datagram sockets, so this uses the shared libc binding
// (src/netlink/libc.ts). The socket is non-blocking and the send carries
// MSG_DONTWAIT: if the receiver's queue is full the call fails at once with
// EAGAIN instead of holding up the event loop.
//
// This module never reads process.env; src/cmd/* passes $NOTIFY_SOCKET in.

import { getSystemErrorName } from 'node:util';
import { FlannelError } from '../errors.js';
import { MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_NONBLOCK } from '../netlink/constants.js';
import { libc, type Libc } from '../netlink/libc.js';

export const AF_UNIX = 1;
export const SOCK_DGRAM = 2;
const MSG_NOSIGNAL = 0x4000;
const EINTR = 4;
/** sizeof(sa_family_t) + sizeof(sun_path) on Linux. */
export const SOCKADDR_UN_SIZE = 110;
const SUN_PATH_MAX = 108;

/** A notification could not be sent. The message names the socket and the reason. */
export class SdNotifyError extends FlannelError {
  override name = 'SdNotifyError';
  constructor(
    readonly socketPath: string,
    message: string,
    /** errno of the failed call, when a syscall failed. */
    readonly errno?: number,
    /** errno name such as "ECONNREFUSED", when known (SD_NOTIFY otherwise). */
    code?: string,
  ) {
    super(`sd_notify to NOTIFY_SOCKET=${socketPath}: ${message}`, { code: code ?? 'SD_NOTIFY', retryable: code === 'EAGAIN' });
  }
}

/**
 * struct sockaddr_un for a notify address, plus the length to pass to the
 * kernel. "/path" is a filesystem socket; "@name" is an abstract socket.
 * Throws SdNotifyError for an address systemd would not have given us.
 */
export function sockaddrUn(address: string): { addr: Buffer; len: number } {
  const bad = (why: string): never => {
    throw new SdNotifyError(address, why);
  };
  if (address.includes('\0')) bad('the address contains a NUL byte');
  const addr = Buffer.alloc(SOCKADDR_UN_SIZE);
  addr.writeUInt16LE(AF_UNIX, 0);
  if (address.startsWith('@')) {
    const name = Buffer.from(address.slice(1), 'utf8');
    if (name.length === 0) bad('the abstract socket name after "@" is empty');
    if (1 + name.length > SUN_PATH_MAX) bad(`the abstract socket name is ${name.length} bytes; at most ${SUN_PATH_MAX - 1} fit in sun_path`);
    // sun_path[0] stays 0 (abstract namespace); the length stops at the name's end.
    name.copy(addr, 3);
    return { addr, len: 2 + 1 + name.length };
  }
  if (!address.startsWith('/')) bad('the address must be an absolute path or start with "@" (abstract socket)');
  const path = Buffer.from(address, 'utf8');
  if (path.length > SUN_PATH_MAX) bad(`the path is ${path.length} bytes; at most ${SUN_PATH_MAX} fit in sun_path`);
  path.copy(addr, 2);
  // Include the terminating NUL when it fits, as the C library does.
  return { addr, len: 2 + Math.min(path.length + 1, SUN_PATH_MAX) };
}

const HINTS: Record<string, string> = {
  ENOENT: 'the socket does not exist',
  ECONNREFUSED: 'nothing is listening on that socket',
  EAGAIN: "the receiver's queue is full (not waiting for it)",
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a component of the path is not a directory',
  EPROTOTYPE: 'the socket is not a datagram socket',
};

function errnoName(errno: number): string | undefined {
  if (!(errno > 0)) return undefined;
  const name = getSystemErrorName(-errno);
  return /^E[A-Z0-9]+$/.test(name) ? name : undefined;
}

function syscallFailure(address: string, op: string, errno: number): SdNotifyError {
  const code = errnoName(errno);
  const what = code ? `${code}${HINTS[code] ? `, ${HINTS[code]}` : ''}` : `errno ${errno}`;
  return new SdNotifyError(address, `${op} failed: ${what}`, errno, code);
}

/**
 * Sends `state` (e.g. "READY=1") to systemd's notification socket.
 *
 * - `socketPath` undefined or "" (no $NOTIFY_SOCKET, i.e. not started by
 *   systemd with Type=notify): returns false and sends nothing.
 * - Sent: returns true.
 * - Anything else (bad address, socket missing, nobody listening, receiver
 *   queue full, ...): throws SdNotifyError naming the socket path and the
 *   errno. flanneld only logs it, as flannel does.
 *
 * Synchronous and never waits: one socket(), one non-blocking sendto(), one close().
 * `sys` replaces the libc binding (tests only).
 */
export function sdNotify(socketPath: string | undefined, state: string, sys?: Libc): boolean {
  if (socketPath === undefined || socketPath === '') return false;
  if (state === '') throw new SdNotifyError(socketPath, 'the state to send is empty');
  const { addr, len } = sockaddrUn(socketPath);
  const lib = sys ?? libc();
  const payload = Buffer.from(state, 'utf8');
  const fd = lib.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw syscallFailure(socketPath, 'socket(AF_UNIX, SOCK_DGRAM)', lib.errno());
  try {
    for (let attempt = 0; ; attempt++) {
      const n = lib.sendto(fd, payload, payload.length, MSG_DONTWAIT | MSG_NOSIGNAL, addr, len);
      if (n === payload.length) return true;
      if (n >= 0) throw new SdNotifyError(socketPath, `sendto sent ${n} of ${payload.length} bytes`);
      const errno = lib.errno();
      if (errno === EINTR && attempt < 3) continue;
      throw syscallFailure(socketPath, 'sendto', errno);
    }
  } finally {
    lib.close(fd);
  }
}
