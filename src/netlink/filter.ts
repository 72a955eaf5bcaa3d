// Classic BPF socket filters for notification sockets (SO_ATTACH_FILTER).
// The kernel runs the filter on every notification before it is queued on
// the socket, so what a listener never looks at costs it nothing: no
// wake-up, no recv(), no decoding, no message to the main thread (issue 11:
// a 5000-peer burst is 15000 notifications of our own additions).
//
// A notification is one netlink message per skb; the filter sees it from
// the nlmsghdr on. BPF loads are big-endian while nlmsghdr fields are in
// host order, so the constants compared against are byte-swapped on a
// little-endian host.

import { endianness } from 'node:os';

/** struct sock_filter */
export interface SockFilterInsn {
  readonly code: number;
  readonly jt: number;
  readonly jf: number;
  readonly k: number;
}

const BPF_LD_H_ABS = 0x28; // BPF_LD | BPF_H | BPF_ABS
const BPF_LD_W_ABS = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K = 0x06; // BPF_RET | BPF_K
/** nlmsghdr: nlmsg_type at 4 (u16), nlmsg_pid at 12 (u32) */
const OFF_TYPE = 4;
const OFF_PID = 12;
const KEEP = 0xffffffff;
const DROP = 0;

const little = endianness() === 'LE';
const host16 = (v: number) => (little ? ((v & 0xff) << 8) | ((v >>> 8) & 0xff) : v & 0xffff);
const host32 = (v: number) => (little ? (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0 : v >>> 0);

/**
 * Passes only notifications whose nlmsg_type is one of `types` and, when
 * `exceptPid` is not 0, whose nlmsg_pid is not `exceptPid` (the port id of
 * the socket whose requests caused them: our own changes).
 */
export function notificationFilter(types: readonly number[], exceptPid = 0): SockFilterInsn[] {
  if (types.length === 0 || types.length > 200) throw new RangeError(`notificationFilter: 1..200 types, got ${types.length}`);
  const prog: SockFilterInsn[] = [{ code: BPF_LD_H_ABS, jt: 0, jf: 0, k: OFF_TYPE }];
  // jeq type_i: on a match jump to "matched", which follows the drop below
  types.forEach((t, i) => {
    const left = types.length - 1 - i; // comparisons after this one
    prog.push({ code: BPF_JEQ_K, jt: left + 1, jf: 0, k: host16(t) });
  });
  prog.push({ code: BPF_RET_K, jt: 0, jf: 0, k: DROP });
  if (exceptPid !== 0) {
    prog.push({ code: BPF_LD_W_ABS, jt: 0, jf: 0, k: OFF_PID });
    prog.push({ code: BPF_JEQ_K, jt: 0, jf: 1, k: host32(exceptPid) });
    prog.push({ code: BPF_RET_K, jt: 0, jf: 0, k: DROP });
  }
  prog.push({ code: BPF_RET_K, jt: 0, jf: 0, k: KEEP });
  return prog;
}

/** struct sock_filter[] as bytes (8 each: u16 code, u8 jt, u8 jf, u32 k, host order). */
export function encodeFilter(prog: readonly SockFilterInsn[]): Buffer {
  const b = Buffer.alloc(prog.length * 8);
  prog.forEach((x, i) => {
    if (little) {
      b.writeUInt16LE(x.code, i * 8);
      b.writeUInt32LE(x.k >>> 0, i * 8 + 4);
    } else {
      b.writeUInt16BE(x.code, i * 8);
      b.writeUInt32BE(x.k >>> 0, i * 8 + 4);
    }
    b.writeUInt8(x.jt, i * 8 + 2);
    b.writeUInt8(x.jf, i * 8 + 3);
  });
  return b;
}

/** Runs a program on one message (tests; the kernel's interpreter does the same for these opcodes). */
export function runFilter(prog: readonly SockFilterInsn[], msg: Buffer): number {
  let a = 0;
  for (let pc = 0; pc < prog.length; pc++) {
    const x = prog[pc]!;
    switch (x.code) {
      case BPF_LD_H_ABS:
        if (x.k + 2 > msg.length) return DROP;
        a = msg.readUInt16BE(x.k);
        break;
      case BPF_LD_W_ABS:
        if (x.k + 4 > msg.length) return DROP;
        a = msg.readUInt32BE(x.k);
        break;
      case BPF_JEQ_K:
        pc += a === x.k ? x.jt : x.jf;
        break;
      case BPF_RET_K:
        return x.k;
      default:
        throw new Error(`runFilter: opcode 0x${x.code.toString(16)}`);
    }
  }
  return DROP;
}
