import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4Net } from '../lease/ip.js';
import * as C from '../netlink/constants.js';
import { FakeKernel } from '../testing/fake-kernel.js';
import { MemoryLogger } from '../testing/memory-logger.js';
import { removeOtherBackends } from './cleanup.js';

test('switching to udp removes host-gw routes (ours, proto 222, and real flannel\'s, proto boot) but leaves an operator\'s proto static route and routes outside the Network', async () => {
  const k = new FakeKernel();
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 });
  await k.replaceRoute({ dst: '10.244.2.0/24', gw: '192.0.2.12', oif: eth0.index }); // ours (the fake marks 222)
  await k.replaceRoute({ dst: '10.244.3.0/24', gw: '192.0.2.13', oif: eth0.index, protocol: C.RTPROT_BOOT });
  await k.replaceRoute({ dst: '10.244.4.0/24', gw: '192.0.2.14', oif: eth0.index, protocol: C.RTPROT_STATIC });
  await k.replaceRoute({ dst: '172.16.0.0/16', gw: '192.0.2.1', oif: eth0.index });
  const log = new MemoryLogger();
  await removeOtherBackends(k, 'udp', parseIPv4Net('10.244.0.0/16'), eth0.index, log);
  assert.deepEqual(k.routes.map((r) => `${r.dst} ${r.protocol}`).sort(), ['10.244.4.0/24 4', '172.16.0.0/16 222']);
  assert.equal(log.lines.filter((l) => /left by a previous host-gw backend/.test(l.msg)).length, 2);
});
