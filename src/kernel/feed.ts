// Kernel change notifications for backends' self-healing: a thin adapter over
// NetlinkSubscriber (link, neighbour/FDB and IPv4 route groups).
import { NetlinkSubscriber, type NetlinkEvent } from '../netlink/subscriber.js';

export class NetlinkChangeFeed {
  private sub: NetlinkSubscriber | null = null;
  async start(onEvent: (e: NetlinkEvent) => void, onOverrun: () => void, onLost: (err: Error) => void): Promise<void> {
    await this.stop();
    this.sub = await NetlinkSubscriber.start({
      // route6: deletions of IPv6 routes (flannel-v6.<VNI>, host-gw v6) are healed too
      groups: ['link', 'neigh', 'route', 'route6'],
      onEvent,
      onOverrun,
      onError: onLost,
    });
  }
  async stop(): Promise<void> {
    await this.sub?.stop();
    this.sub = null;
  }
}
