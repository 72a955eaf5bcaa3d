// Public surface of the rtnetlink layer. Everything that changes host
// networking goes through src/kernel, which is built on these pieces.
export * from './constants.js';
export * from './errors.js';
export * from './addr.js';
export * from './codec.js';
export * from './rtnl.js';
export * from './requests.js';
export { NetlinkSocket } from './socket.js';
export type { NetlinkSocketOptions, RequestOptions, DumpOptions, BatchOptions, BatchReply, ReceiveResult } from './socket.js';
export { NetlinkSubscriber } from './subscriber.js';
export type { NetlinkEvent, SubscriberGroup, SubscriberOptions } from './subscriber.js';
