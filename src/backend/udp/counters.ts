// Counter layout shared by the data-path workers (writers) and the backend
// (reader). One Float64Array over a SharedArrayBuffer; each slot has exactly
// one writer thread, so plain stores suffice (aligned 8-byte stores are not
// torn on the platforms we run on) and readers see values within a batch.

export const TX_COUNTERS = [
  'packets',
  'bytes',
  'tunReads',
  'tsoPackets',
  'sendCalls',
  'icmpUnreachableSent',
  'dropShort',
  'dropNotIPv4',
  'dropBadHeaderLen',
  'dropBadTotalLen',
  'dropTtlExpired',
  'dropNoRoute',
  'dropBadGso',
  'dropBadChecksumOffload',
  'dropSendError',
] as const;

export const RX_COUNTERS = [
  'packets',
  'bytes',
  'datagrams',
  'recvCalls',
  'tunWrites',
  'coalesced',
  'dropShort',
  'dropNotIPv4',
  'dropBadHeaderLen',
  'dropBadTotalLen',
  'dropTtlExpired',
  'dropLocalSource',
  'dropTruncated',
  'dropTunWriteError',
] as const;

export type TxCounter = (typeof TX_COUNTERS)[number];
export type RxCounter = (typeof RX_COUNTERS)[number];

export const TX_BASE = 0;
export const RX_BASE = TX_COUNTERS.length;
export const COUNTER_SLOTS = TX_COUNTERS.length + RX_COUNTERS.length;

export function txIndex(name: TxCounter): number {
  return TX_BASE + TX_COUNTERS.indexOf(name);
}

export function rxIndex(name: RxCounter): number {
  return RX_BASE + RX_COUNTERS.indexOf(name);
}

export interface TxDrops {
  short: number;
  notIPv4: number;
  badHeaderLen: number;
  badTotalLen: number;
  ttlExpired: number;
  noRoute: number;
  badGso: number;
  badChecksumOffload: number;
  sendError: number;
}

export interface RxDrops {
  short: number;
  notIPv4: number;
  badHeaderLen: number;
  badTotalLen: number;
  ttlExpired: number;
  /** inner source is one of this host's addresses (spoofed; see udp.ts on accept_local) */
  localSource: number;
  truncated: number;
  tunWriteError: number;
}

export interface UdpStats {
  /** TUN -> UDP (encapsulation) */
  tunToUdp: {
    /** inner packets sent as datagrams (a TSO super-packet counts once per segment) */
    packets: number;
    bytes: number;
    /** read() calls that returned a packet */
    tunReads: number;
    /** TSO super-packets segmented */
    tsoPackets: number;
    /** sendmmsg() calls */
    sendCalls: number;
    drops: TxDrops;
  };
  /** UDP -> TUN (decapsulation) */
  udpToTun: {
    /** inner packets written to the TUN */
    packets: number;
    bytes: number;
    /** datagrams received (a GRO train counts once per datagram) */
    datagrams: number;
    /** recvmmsg() calls that returned data */
    recvCalls: number;
    /** write() calls to the TUN */
    tunWrites: number;
    /** packets merged into a larger TSO write */
    coalesced: number;
    drops: RxDrops;
  };
  icmpUnreachableSent: number;
  /** entries in the data path's route table */
  routes: number;
}

function dropName(n: string): string {
  return n.charAt(4).toLowerCase() + n.slice(5);
}

export function readStats(c: Float64Array, routes: number): UdpStats {
  const tx: Record<string, number> = {};
  const txDrops: Record<string, number> = {};
  TX_COUNTERS.forEach((n, i) => {
    if (n.startsWith('drop')) txDrops[dropName(n)] = c[TX_BASE + i]!;
    else tx[n] = c[TX_BASE + i]!;
  });
  const rx: Record<string, number> = {};
  const rxDrops: Record<string, number> = {};
  RX_COUNTERS.forEach((n, i) => {
    if (n.startsWith('drop')) rxDrops[dropName(n)] = c[RX_BASE + i]!;
    else rx[n] = c[RX_BASE + i]!;
  });
  return {
    tunToUdp: {
      packets: tx.packets!,
      bytes: tx.bytes!,
      tunReads: tx.tunReads!,
      tsoPackets: tx.tsoPackets!,
      sendCalls: tx.sendCalls!,
      drops: txDrops as unknown as TxDrops,
    },
    udpToTun: {
      packets: rx.packets!,
      bytes: rx.bytes!,
      datagrams: rx.datagrams!,
      recvCalls: rx.recvCalls!,
      tunWrites: rx.tunWrites!,
      coalesced: rx.coalesced!,
      drops: rxDrops as unknown as RxDrops,
    },
    icmpUnreachableSent: tx.icmpUnreachableSent!,
    routes,
  };
}
