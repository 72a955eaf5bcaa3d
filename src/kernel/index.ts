// Typed host-networking API (the only code that changes host networking).
export * from './types.js';
export { RtNetlink } from './rtnetlink.js';
export { isAlreadyDone, vxlanMismatches, VXLAN_DEFAULT_PORT } from './idempotency.js';
export type { Effect } from './idempotency.js';
export { NetlinkError } from '../netlink/errors.js';
export { NetlinkSubscriber } from '../netlink/subscriber.js';
export type { NetlinkEvent, SubscriberGroup, SubscriberOptions } from '../netlink/subscriber.js';
