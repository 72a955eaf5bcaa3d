// When a host switches backends (vxlan -> host-gw -> udp ...), the previous
// backend's kernel state must not linger: a stale flannel.1 with onlink routes,
// or stale gateway routes into the Network, would shadow the new data path.
// Each backend calls this when it activates, naming itself.

import { ipv4NetContains, parseIPv4, type IPv4Net } from '../lease/ip.js';
import type { KernelNet } from '../kernel/types.js';
import type { Logger } from '../log/log.js';
import { RTPROT_BOOT, RTPROT_FLANNEL } from '../netlink/constants.js';

export type BackendKind = 'vxlan' | 'host-gw' | 'udp';

export async function removeOtherBackends(k: KernelNet, keep: BackendKind, network: IPv4Net, extIndex: number, log: Logger): Promise<void> {
  for (const l of await k.listLinks()) {
    const staleVxlan = keep !== 'vxlan' && l.kind === 'vxlan' && /^flannel(-v6)?\.\d+$/.test(l.name);
    const staleTun = keep !== 'udp' && l.kind === 'tun' && /^flannel\d+$/.test(l.name);
    if (staleVxlan || staleTun) {
      log.info(`removing ${l.name}, left by a previous ${staleVxlan ? 'vxlan' : 'udp'} backend`);
      await k.deleteLink(l.index);
    }
  }
  // Gateway routes into the Network on the external interface are host-gw's
  // (or vxlan DirectRouting's, which the vxlan reconciler manages itself):
  // ours carry RTPROT_FLANNEL, real flannel's RTPROT_BOOT. A route an
  // operator added with another protocol (e.g. `proto static`) is theirs.
  if (keep === 'udp') {
    for (const r of await k.listRoutes({ oif: extIndex })) {
      const dst = r.dst.split('/');
      const flannels = r.protocol === RTPROT_FLANNEL || r.protocol === RTPROT_BOOT;
      if (r.oif === extIndex && r.gateway && flannels && ipv4NetContains(network, parseIPv4(dst[0]!)) && Number(dst[1]) >= network.prefix) {
        log.info(`removing route ${r.dst} via ${r.gateway}, left by a previous host-gw backend`);
        await k.delRoute({ dst: r.dst, gw: r.gateway, oif: extIndex });
      }
    }
  }
}
