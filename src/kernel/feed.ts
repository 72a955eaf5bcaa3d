// Kernel change notifications for backends' self-healing: a thin adapter over
// NetlinkSubscriber (link, neighbour/FDB and IPv4/IPv6 route groups).
//
// The backends' damage() acts on link changes and on deletions made by
// someone else; everything else is dropped by a socket filter in the kernel
// (filter.ts): our own additions (15000 notifications for a 5000-peer
// burst), anyone's additions, and whatever our own requests caused. None of
// it wakes the subscriber or reaches this thread.
import { RTM_DELLINK, RTM_DELNEIGH, RTM_DELROUTE, RTM_NEWLINK } from '../netlink/constants.js';
import { notificationFilter } from '../netlink/filter.js';
import { NetlinkSubscriber, type NetlinkEvent } from '../netlink/subscriber.js';

/** The notification types backends look at (RTM_DELNEIGH covers FDB entries too). */
export const FEED_TYPES = [RTM_NEWLINK, RTM_DELLINK, RTM_DELNEIGH, RTM_DELROUTE] as const;

export interface ChangeFeedOptions {
  /** the port id of our request socket (0 while unknown): what its requests caused is dropped too */
  ownPort?: () => number;
}

export class NetlinkChangeFeed {
  private sub: NetlinkSubscriber | null = null;
  constructor(private readonly o: ChangeFeedOptions = {}) {}
  async start(onEvent: (e: NetlinkEvent) => void, onOverrun: () => void, onLost: (err: Error) => void): Promise<void> {
    await this.stop();
    this.sub = await NetlinkSubscriber.start({
      // route6: deletions of IPv6 routes (flannel-v6.<VNI>, host-gw v6) are healed too
      groups: ['link', 'neigh', 'route', 'route6'],
      filter: notificationFilter(FEED_TYPES, this.o.ownPort?.() ?? 0),
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
