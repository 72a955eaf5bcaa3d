// flannel's nftables mode (`EnableNFTables: true`, spec §9.5): table
// `flannel-ipv4` (family ip) and, with EnableIPv6, `flannel-ipv6` (family
// ip6), each with a nat chain `postrtg` (--ip-masq) and a filter chain
// `forward` (--iptables-forward-rules), written as real flanneld v0.28 writes
// them (observed-flannel.md "nftables mode"), with one deliberate change to
// the 4th masquerade rule, explained at nftMasqChain().
//
// The tables are flannel's alone. Every install is one `nft -f -` transaction
// that declares each table, deletes it and recreates it with all its chains
// and rules (both tables in the same transaction), so there is never a moment
// with half of the rules, and nothing survives from an earlier run or an
// earlier subnet. Unlike flannel (which writes its nftables rules once), each
// table is re-read every --iptables-resync seconds with `nft -j` and
// recreated when anything in it differs: a deleted or changed rule, chain or
// the whole table.
//
// The IPv6 table: observed-flannel.md lists the rules with S, N and M
// standing for either family ("ff00::/8 for v6"); flannel's traffic manager
// builds both tables from the same code with `ip6` in place of `ip` (spec
// §9.5), so the v6 rules below are the v4 ones with `ip6` and ff00::/8.

import type { Logger } from '../log/log.js';
import { formatIPv4Net, formatIPv6Net, type IPv4Net, type IPv6Net } from '../lease/ip.js';
import { runCmd, type CmdOptions } from './iptables.js';
import { Resync } from './resync.js';

export const NFT_TABLE_V4 = 'flannel-ipv4';
export const NFT_TABLE_V6 = 'flannel-ipv6';
/** kube-proxy's masquerade mark; flannel matches it exactly (not masked), as nft lists it */
export const KUBE_MARK = '0x00004000';

const PRIORITY = { srcnat: 100, filter: 0 } as const;

export interface NftChain {
  name: string;
  comment: string;
  type: 'nat' | 'filter';
  hook: 'postrouting' | 'forward';
  priority: keyof typeof PRIORITY;
  /** each rule exactly as `nft list` prints it */
  rules: string[];
}

export interface NftTable {
  family: 'ip' | 'ip6';
  name: string;
  comment: string;
  chains: NftChain[];
}

/**
 * The masquerade chain. N is the pod network, S this node's subnet.
 *
 * Rule 4 deliberately differs from flannel's nftables mode. flannel writes
 * `ip saddr != S ip daddr N return` where its iptables mode has
 * `! -s N -d S -j RETURN` ("no NAT for outside traffic arriving for local
 * pods", flannel's own comment for it). flannel's version also returns every
 * packet that rule 6 (`ip saddr != N ip daddr N masquerade`) is there for,
 * since S is inside N, so rule 6 can never match: traffic from outside the
 * overlay that this node forwards to pods on *other* nodes is not masqueraded
 * in flannel's nftables mode but is in its iptables mode. We write rule 4 with
 * the iptables meaning, `ip saddr != N ip daddr S return`, so both modes NAT
 * exactly the same packets and rule 6 works. The text of the other five rules
 * is flannel's. Firewall rules are local to a node, so this changes nothing
 * for peers; only a byte-for-byte golden check of this chain sees it.
 */
export function nftMasqChain(network: IPv4Net, subnet: IPv4Net, fullyRandom: boolean): NftChain {
  return masqChain('ip', formatIPv4Net(network), formatIPv4Net(subnet), '224.0.0.0/4', fullyRandom);
}

/** The same for `flannel-ipv6`: IPv6Network, our v6 subnet, multicast ff00::/8 (rule 4 as above). */
export function nftMasqChain6(network: IPv6Net, subnet: IPv6Net, fullyRandom: boolean): NftChain {
  return masqChain('ip6', formatIPv6Net(network), formatIPv6Net(subnet), 'ff00::/8', fullyRandom);
}

function masqChain(fam: 'ip' | 'ip6', N: string, S: string, M: string, fullyRandom: boolean): NftChain {
  const masq = fullyRandom ? 'masquerade fully-random' : 'masquerade';
  return {
    name: 'postrtg',
    comment: 'chain to manage traffic masquerading by flannel',
    type: 'nat',
    hook: 'postrouting',
    priority: 'srcnat',
    rules: [
      `meta mark ${KUBE_MARK} return`,
      `${fam} saddr ${S} ${fam} daddr ${N} return`,
      `${fam} saddr ${N} ${fam} daddr ${S} return`,
      `${fam} saddr != ${N} ${fam} daddr ${S} return`, // flannel: `${fam} saddr != ${S} ${fam} daddr ${N} return` (see nftMasqChain)
      `${fam} saddr ${N} ${fam} daddr != ${M} ${masq}`,
      `${fam} saddr != ${N} ${fam} daddr ${N} ${masq}`,
    ],
  };
}

/** The forward chain: accept everything from and to the pod network (Docker sets FORWARD to DROP). */
export function nftForwardChain(network: IPv4Net): NftChain {
  return forwardChain('ip', formatIPv4Net(network));
}

export function nftForwardChain6(network: IPv6Net): NftChain {
  return forwardChain('ip6', formatIPv6Net(network));
}

function forwardChain(fam: 'ip' | 'ip6', N: string): NftChain {
  return {
    name: 'forward',
    comment: 'chain to accept flannel traffic',
    type: 'filter',
    hook: 'forward',
    priority: 'filter',
    rules: [`${fam} saddr ${N} accept`, `${fam} daddr ${N} accept`],
  };
}

export function nftTableV4(chains: NftChain[]): NftTable {
  return { family: 'ip', name: NFT_TABLE_V4, comment: `rules for ${NFT_TABLE_V4}`, chains };
}

export function nftTableV6(chains: NftChain[]): NftTable {
  return { family: 'ip6', name: NFT_TABLE_V6, comment: `rules for ${NFT_TABLE_V6}`, chains };
}

/**
 * The `nft -f -` input that replaces the table atomically: `add table` makes
 * the `delete` valid when the table does not exist yet; the delete drops
 * whatever was there (rules of an old subnet, foreign additions); the block
 * recreates it. nft runs the whole file as one transaction.
 */
export function nftPayload(t: NftTable): string {
  const out = [`add table ${t.family} ${t.name}`, `delete table ${t.family} ${t.name}`, `table ${t.family} ${t.name} {`, `\tcomment "${t.comment}"`];
  for (const c of t.chains) {
    out.push(`\tchain ${c.name} {`, `\t\tcomment "${c.comment}"`, `\t\ttype ${c.type} hook ${c.hook} priority ${c.priority}; policy accept;`);
    for (const r of c.rules) out.push(`\t\t${r}`);
    out.push('\t}');
  }
  out.push('}', '');
  return out.join('\n');
}

/** One `nft -f -` file for several tables: nft applies it as a single transaction (all or nothing). */
export function nftTransaction(ts: readonly NftTable[]): string {
  return ts.map(nftPayload).join('');
}

// ---------------------------------------------------------------------------
// Reading a table back (`nft -j list table`)

/** A chain as read back from the kernel, rules rendered the way `nft list` prints them. */
export interface ListedChain {
  name: string;
  type?: string;
  hook?: string;
  prio?: number;
  policy?: string;
  rules: string[];
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const isObj = (v: Json | undefined): v is { [k: string]: Json } => typeof v === 'object' && v !== null && !Array.isArray(v);

function operand(v: Json | undefined, hexMark: boolean): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return hexMark ? `0x${v.toString(16).padStart(8, '0')}` : String(v);
  if (isObj(v)) {
    const p = v.prefix;
    if (isObj(p) && typeof p.addr === 'string' && typeof p.len === 'number') return `${p.addr}/${p.len}`;
    const m = v.meta;
    if (isObj(m) && typeof m.key === 'string') return `meta ${m.key}`;
    const pl = v.payload;
    if (isObj(pl) && typeof pl.protocol === 'string' && typeof pl.field === 'string') return `${pl.protocol} ${pl.field}`;
  }
  return null;
}

/**
 * Renders one statement of `nft -j` output as `nft list` prints it, for the
 * statements flannel's rules use (address and mark matches, return, accept,
 * masquerade). Anything else comes back as its JSON, which never equals a
 * wanted rule, so a foreign statement counts as drift.
 */
export function renderStatement(st: Json): string {
  if (isObj(st)) {
    const keys = Object.keys(st);
    if (keys.length === 1) {
      const k = keys[0]!;
      const v = st[k];
      if ((k === 'return' || k === 'accept' || k === 'drop') && v === null) return k;
      if (k === 'masquerade') {
        if (v === null) return 'masquerade';
        if (isObj(v) && Object.keys(v).length === 1) {
          const flags = Array.isArray(v.flags) ? v.flags : [v.flags];
          if (flags.every((x) => typeof x === 'string')) return ['masquerade', ...(flags as string[])].join(' ');
        }
      }
      if (k === 'match' && isObj(v) && (v.op === '==' || v.op === '!=')) {
        const left = operand(v.left, false);
        const right = operand(v.right, left === 'meta mark');
        if (left && right) return v.op === '==' ? `${left} ${right}` : `${left} != ${right}`;
      }
    }
  }
  return JSON.stringify(st);
}

/** Parses `nft -j list table <family> <name>` into its chains (in listing order). */
export function parseListedTable(text: string): ListedChain[] {
  const doc = JSON.parse(text) as { nftables?: Json[] };
  const chains = new Map<string, ListedChain>();
  const items = Array.isArray(doc.nftables) ? doc.nftables : [];
  for (const it of items) {
    if (!isObj(it)) continue;
    const c = it.chain;
    if (isObj(c) && typeof c.name === 'string') {
      chains.set(c.name, {
        name: c.name,
        ...(typeof c.type === 'string' ? { type: c.type } : {}),
        ...(typeof c.hook === 'string' ? { hook: c.hook } : {}),
        ...(typeof c.prio === 'number' ? { prio: c.prio } : {}),
        ...(typeof c.policy === 'string' ? { policy: c.policy } : {}),
        rules: [],
      });
    }
  }
  for (const it of items) {
    if (!isObj(it)) continue;
    const r = it.rule;
    if (!isObj(r) || typeof r.chain !== 'string') continue;
    const exprs = Array.isArray(r.expr) ? r.expr : [];
    chains.get(r.chain)?.rules.push(exprs.map(renderStatement).join(' '));
  }
  // sets, maps, flowtables, objects: not ours; report them as a chain nobody wants
  const foreign = items.filter((it) => isObj(it) && !('metainfo' in it) && !('table' in it) && !('chain' in it) && !('rule' in it));
  if (foreign.length) chains.set('\0foreign', { name: '\0foreign', rules: foreign.map((x) => JSON.stringify(x)) });
  return [...chains.values()];
}

/** What differs between the listed table and the wanted one (empty: intact). */
export function tableDrift(want: NftTable, listed: ListedChain[]): string[] {
  const drift: string[] = [];
  const byName = new Map(listed.map((c) => [c.name, c]));
  for (const c of want.chains) {
    const got = byName.get(c.name);
    if (!got) {
      drift.push(`chain ${c.name} is missing`);
      continue;
    }
    if (got.type !== c.type || got.hook !== c.hook || got.prio !== PRIORITY[c.priority] || got.policy !== 'accept') {
      drift.push(`chain ${c.name} is not "type ${c.type} hook ${c.hook} priority ${c.priority}; policy accept"`);
    }
    if (got.rules.join('\n') !== c.rules.join('\n')) drift.push(`chain ${c.name} has rules [${got.rules.join('; ')}]`);
  }
  for (const got of listed) if (!want.chains.some((c) => c.name === got.name)) drift.push(got.name === '\0foreign' ? 'foreign objects in the table' : `unexpected chain ${got.name}`);
  return drift;
}

// ---------------------------------------------------------------------------
// The manager

export class NftablesManager {
  private readonly resync: Resync<NftTable>;

  constructor(
    private readonly log: Logger,
    resyncSeconds: number,
    private readonly cmd: CmdOptions = {},
  ) {
    this.resync = new Resync(
      {
        problems: (t) => this.drift(t),
        install: (t) => this.apply(t),
        describe: (t, drift) => `nftables rules of ${t.family} ${t.name} are missing or changed (${drift.join('; ')}); recreating the table`,
      },
      log,
      resyncSeconds,
    );
  }

  /** tables put back by the periodic check */
  get repairs(): number {
    return this.resync.repairs;
  }

  /**
   * Installs the tables, all of them in one transaction, then re-checks them
   * every resync period (a drifted table is recreated on its own). A chain
   * that asks for `fully-random` masquerading falls back to plain masquerade
   * when this kernel/nft cannot do it (flannel's dry-run check).
   */
  async setup(tables: NftTable[]): Promise<void> {
    this.close();
    const wanted: NftTable[] = [];
    for (const t of tables) wanted.push(await this.withSupportedMasq(t));
    this.resync.items = wanted;
    if (wanted.length > 0) await this.apply(...wanted);
    this.resync.start();
  }

  private async withSupportedMasq(t: NftTable): Promise<NftTable> {
    if (!t.chains.some((c) => c.rules.some((r) => r.endsWith(' masquerade fully-random')))) return t;
    const probe = await runCmd('nft', ['-c', '-f', '-'], nftPayload(t), this.cmd);
    if (probe.code === 0 || probe.code === 127) return t; // 127: apply() reports the missing binary
    const plain: NftTable = { ...t, chains: t.chains.map((c) => ({ ...c, rules: c.rules.map((r) => r.replace(/ masquerade fully-random$/, ' masquerade')) })) };
    if ((await runCmd('nft', ['-c', '-f', '-'], nftPayload(plain), this.cmd)).code !== 0) return t; // some other problem: let apply() report it
    this.log.warn(`nft cannot masquerade fully-random here (${probe.stderr.trim()}); masquerading without it`);
    return plain;
  }

  private async apply(...ts: NftTable[]): Promise<void> {
    const r = await runCmd('nft', ['-f', '-'], nftTransaction(ts), this.cmd);
    if (r.code !== 0) throw new Error(`nft -f (table ${ts.map((t) => `${t.family} ${t.name}`).join(', table ')}) failed: ${r.stderr.trim()}`);
  }

  /** Differences between the kernel's table and the wanted one; ['table … is missing'] when it is gone. */
  async drift(t: NftTable): Promise<string[]> {
    const r = await runCmd('nft', ['-j', 'list', 'table', t.family, t.name], undefined, this.cmd);
    if (r.code !== 0) return [`table ${t.family} ${t.name} is missing`];
    try {
      return tableDrift(t, parseListedTable(r.stdout));
    } catch (e) {
      return [`cannot read table ${t.family} ${t.name}: ${(e as Error).message}`];
    }
  }

  /** The periodic resync: recreate any table that is not exactly as installed. */
  check(): Promise<void> {
    return this.resync.check();
  }

  close(): void {
    this.resync.stop();
  }
}

/**
 * Deletes flannel's nftables tables (by default `ip flannel-ipv4` and
 * `ip6 flannel-ipv6`): what flanneld does when it starts in iptables mode
 * (spec §9.4). Tables that are not there are skipped, the others go in one
 * transaction; like flannel, failures (no nft binary, no nf_tables) are not
 * fatal. Returns the tables it deleted, e.g. ['ip flannel-ipv4'].
 */
export async function cleanupNftables(
  log: Logger,
  o: CmdOptions & { tables?: readonly string[] } = {},
): Promise<string[]> {
  const list = await runCmd('nft', ['list', 'tables'], undefined, o);
  if (list.code !== 0) {
    log.debug(`nft list tables failed (${list.stderr.trim()}); no nftables rules to clean up`);
    return [];
  }
  const present = new Set(list.stdout.split('\n').map((l) => l.trim()));
  const ours = (o.tables ?? [`ip ${NFT_TABLE_V4}`, `ip6 ${NFT_TABLE_V6}`]).filter((t) => present.has(`table ${t}`));
  if (ours.length === 0) return [];
  const r = await runCmd('nft', ['-f', '-'], ours.map((t) => `delete table ${t}\n`).join(''), o);
  if (r.code !== 0) {
    log.warn(`could not delete nftables tables ${ours.join(', ')}: ${r.stderr.trim()}`);
    return [];
  }
  log.info(`removed flannel nftables tables: ${ours.join(', ')}`);
  return ours;
}
