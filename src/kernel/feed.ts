// Kernel change notifications for backends' self-healing: a thin adapter over
// NetlinkSubscriber (link, neighbour/FDB and IPv4 route groups).
import { NetlinkSubscriber, type NetlinkEvent } from '../netlink/subscriber.js';

export class NetlinkChangeFeed {
  private sub: NetlinkSubscriber | null = null;
  async start(onEvent: (e: NetlinkEvent) => void, onOverrun: () => void, onLost: (err: Error) => void): Promise<void> {
    await this.stop();
    this.sub = await NetlinkSubscriber.start({
      groups: ['link', 'neigh', 'route'],
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
