// Test fixture (not part of the product): started with `ip netns exec <ns>`,
// asks the kernel port what flanneld would ask at start-up (interfaces,
// default route interface, the selected external interface) and exercises
// the sysctl half of the host port, then prints one JSON object.

import { RtNetlink } from '../../src/kernel/rtnetlink.js';
import { kernelHostView, selectExternalInterface } from '../../src/daemon/iface.js';
import { formatIPv4 } from '../../src/lease/ip.js';

const k = process.argv.includes('--worker') ? RtNetlink.openInWorker() : process.argv.includes('--async') ? RtNetlink.openAsync() : RtNetlink.open();
try {
  const view = kernelHostView(k);
  const ext = await selectExternalInterface(view, { iface: [], ifaceRegex: [] });
  const before = await k.getSysctl('net/ipv4/conf/hv1/rp_filter');
  await k.setSysctl('net/ipv4/conf/hv1/rp_filter', '2');
  let missing = 'none';
  try {
    await k.setSysctl('net/ipv4/conf/nosuchdev/rp_filter', '1');
  } catch (e) {
    missing = (e as NodeJS.ErrnoException).code ?? 'error';
  }
  const forward = process.argv.find((a) => a.startsWith('--forward='));
  if (forward) await k.setSysctl('net/ipv4/ip_forward', forward.slice('--forward='.length));
  const out = {
    interfaces: await view.interfaces(),
    defaultRoute: await view.defaultRouteInterface(),
    selected: { name: ext.name, index: ext.index, mtu: ext.mtu, ifaceAddr: formatIPv4(ext.ifaceAddr) },
    sysctl: { before, after: await k.getSysctl('net/ipv4/conf/hv1/rp_filter'), absent: await k.getSysctl('net/ipv4/conf/nosuchdev/rp_filter'), missing },
  };
  process.stdout.write(JSON.stringify(out) + '\n');
} finally {
  k.close();
}
