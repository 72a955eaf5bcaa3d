import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeFilter, notificationFilter, runFilter } from './filter.js';
import * as C from './constants.js';

/** A notification as the kernel queues it: nlmsghdr (host order, little-endian here) and some payload. */
function msg(type: number, pid: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(32, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(0, 6);
  b.writeUInt32LE(0, 8);
  b.writeUInt32LE(pid, 12);
  return b;
}

test('notificationFilter: only the listed types pass, and none caused by the excepted port id', () => {
  const types = [C.RTM_NEWLINK, C.RTM_DELLINK, C.RTM_DELNEIGH, C.RTM_DELROUTE];
  const own = 0x8000_1234; // port ids use the high bit for kernel-assigned ones
  const f = notificationFilter(types, own);
  for (const t of types) {
    assert.notEqual(runFilter(f, msg(t, 0)), 0, `type ${t} from the kernel`);
    assert.notEqual(runFilter(f, msg(t, 77)), 0, `type ${t} from someone else`);
    assert.equal(runFilter(f, msg(t, own)), 0, `type ${t} from us`);
  }
  for (const t of [C.RTM_NEWNEIGH, C.RTM_NEWROUTE, C.RTM_NEWADDR, C.RTM_DELADDR]) {
    assert.equal(runFilter(f, msg(t, 0)), 0, `type ${t}`);
    assert.equal(runFilter(f, msg(t, 77)), 0, `type ${t}`);
  }
  // without a port id: every listed type passes, whoever caused it
  const g = notificationFilter([C.RTM_DELROUTE]);
  assert.notEqual(runFilter(g, msg(C.RTM_DELROUTE, own)), 0);
  assert.equal(runFilter(g, msg(C.RTM_NEWROUTE, own)), 0);
  // a runt message is dropped, not read past its end
  assert.equal(runFilter(f, Buffer.alloc(3)), 0);
  assert.throws(() => notificationFilter([]), RangeError);
});

test('encodeFilter: struct sock_filter, 8 bytes each, host order', () => {
  const b = encodeFilter([{ code: 0x15, jt: 2, jf: 1, k: 0x01020304 }]);
  assert.deepEqual([...b], [0x15, 0x00, 2, 1, 0x04, 0x03, 0x02, 0x01]);
});
