import { constants as osConstants } from 'node:os';
import { FlannelError } from '../errors.js';

// Errno names come from Node's own table for this platform (pure data, no
// I/O); short human texts for the errnos rtnetlink commonly returns are kept
// here so error messages read like iproute2's "RTNETLINK answers: ...".
// Where Linux has two names for one number, use the one the kernel's
// networking code (and iproute2's messages) use.
const PREFERRED = new Set(['EOPNOTSUPP', 'EAGAIN', 'EDEADLK']);
const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!ERRNO_NAMES.has(value) || PREFERRED.has(name)) ERRNO_NAMES.set(value, name);
}

const ERRNO_TEXT: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  ESRCH: 'No such process',
  EINTR: 'Interrupted system call',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  EINVAL: 'Invalid argument',
  ERANGE: 'Numerical result out of range',
  EOPNOTSUPP: 'Operation not supported',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  EADDRINUSE: 'Address already in use',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  ENETUNREACH: 'Network is unreachable',
  ENOBUFS: 'No buffer space available',
  ETIMEDOUT: 'Connection timed out',
  EMSGSIZE: 'Message too long',
  EPROTONOSUPPORT: 'Protocol not supported',
  ENOTSUP: 'Operation not supported',
};

/** 'EEXIST' for 17 etc.; 'E<n>' for numbers unknown on this platform. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

export function errnoNumber(name: string): number | undefined {
  return (osConstants.errno as Record<string, number>)[name];
}

export function errnoText(errno: number): string {
  return ERRNO_TEXT[errnoName(errno)] ?? `errno ${errno}`;
}

export interface NetlinkErrorInit {
  /** Positive errno as the kernel reported it (NLMSG_ERROR carries -errno). */
  errno: number;
  /** What was being done, e.g. 'RTM_NEWNEIGH replace 10.244.2.0 on ifindex 5'. */
  op: string;
  /** NLMSGERR_ATTR_MSG text from the kernel's extended ack, if any. */
  extAck?: string | undefined;
  /** NLMSGERR_ATTR_OFFS: byte offset in the request of the offending attribute. */
  extAckOffset?: number | undefined;
  /** Free-form detail for errors that did not come from the kernel (e.g. timeouts). */
  detail?: string | undefined;
}

/** Errnos that say "not now" rather than "not like this". */
const RETRYABLE = new Set(['EAGAIN', 'EBUSY', 'EINTR', 'ENOBUFS', 'ENOMEM', 'ETIMEDOUT']);

/**
 * A failed netlink/socket operation. `errno` and `code` are preserved exactly so
 * callers can branch on them (idempotency rules in src/kernel do); the message
 * is a single self-contained line suitable for logs, so callers that expect
 * the error should log `err.message`, never the stack.
 */
export class NetlinkError extends FlannelError {
  override readonly name = 'NetlinkError';
  readonly errno: number;
  readonly op: string;
  readonly extAck: string | undefined;
  readonly extAckOffset: number | undefined;

  constructor(init: NetlinkErrorInit) {
    const code = errnoName(init.errno);
    let message = `${init.op}: ${code} (${errnoText(init.errno)})`;
    if (init.extAck) message += `: kernel says "${init.extAck}"`;
    if (init.detail) message += `: ${init.detail}`;
    super(message, { code, retryable: RETRYABLE.has(code) });
    this.errno = init.errno;
    this.op = init.op;
    this.extAck = init.extAck;
    this.extAckOffset = init.extAckOffset;
  }
}

export type DecodeErrorReason =
  | 'TRUNCATED_HEADER'
  | 'BAD_MESSAGE_LENGTH'
  | 'TRUNCATED_MESSAGE'
  | 'TRUNCATED_BODY'
  | 'TRUNCATED_ATTRIBUTE'
  | 'BAD_ATTRIBUTE_LENGTH'
  | 'BAD_VALUE_LENGTH'
  | 'BAD_VALUE'
  | 'UNEXPECTED_TYPE';

/**
 * The codec refuses a buffer. Decoding never reads past the buffer and never
 * loops without progress; anything inconsistent surfaces as this error with
 * `reason`, the byte `offset` (relative to the buffer handed to the decoder
 * that failed) and `what` was being decoded.
 */
export class NetlinkDecodeError extends FlannelError {
  override readonly name = 'NetlinkDecodeError';
  readonly reason: DecodeErrorReason;
  readonly offset: number;
  readonly what: string;

  constructor(reason: DecodeErrorReason, what: string, offset: number, detail: string) {
    super(`netlink decode: ${what} at offset ${offset}: ${detail}`, { code: reason });
    this.reason = reason;
    this.what = what;
    this.offset = offset;
  }
}
