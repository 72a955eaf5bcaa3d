// A multi-member etcd cluster on a Topology's underlay: member i runs in the
// underlay namespace on its own address 192.0.2.(1+i) (added to br0 next to
// the gateway's 192.0.2.1), client port 2379, peer port 2380, data under the
// topology's tmpDir. Processes are started with topo.spawn, so destroy()
// kills them by pid whatever happens; a member can be killed and started
// again (same data dir) to test failover.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { ipAdd, UNDERLAY_GW, UNDERLAY_LEN, type BgProc, type Topology } from './netns.js';

export interface EtcdMember {
  readonly name: string;
  readonly ip: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  proc: BgProc | undefined;
}

export interface MemberStatus {
  member: EtcdMember;
  /** decimal strings: etcd's 64-bit IDs do not fit a JS number */
  id: string;
  leader: string;
  revision: number;
  raftTerm: number;
}

export class EtcdCluster {
  private constructor(
    private readonly topo: Topology,
    readonly members: EtcdMember[],
    private readonly extraArgs: string[],
  ) {}

  /** Starts n members (default 3) and waits until every one reports healthy and a leader is elected. */
  static async start(topo: Topology, o: { size?: number; extraArgs?: string[]; timeoutMs?: number } = {}): Promise<EtcdCluster> {
    const n = o.size ?? 3;
    if (n < 1 || n > 9) throw new Error(`cluster size must be 1..9, got ${n}`);
    const members: EtcdMember[] = [];
    for (let i = 1; i <= n; i++) {
      const ip = ipAdd(UNDERLAY_GW, i);
      await topo.ip(topo.underlay, 'addr', 'add', `${ip}/${UNDERLAY_LEN}`, 'dev', 'br0');
      members.push({ name: `m${i}`, ip, clientUrl: `http://${ip}:2379`, peerUrl: `http://${ip}:2380`, dataDir: path.join(topo.tmpDir, `etcd-m${i}`), proc: undefined });
    }
    const c = new EtcdCluster(topo, members, o.extraArgs ?? []);
    for (const m of members) c.spawn(m, 'new');
    await c.waitHealthy(members, o.timeoutMs ?? 30_000);
    return c;
  }

  /** The client URLs, comma-separated, as --etcd-endpoints takes them. */
  get endpoints(): string {
    return this.members.map((m) => m.clientUrl).join(',');
  }

  private spawn(m: EtcdMember, state: 'new' | 'existing'): void {
    mkdirSync(m.dataDir, { recursive: true });
    m.proc = this.topo.spawn(
      this.topo.underlay,
      [
        'etcd', '--name', m.name, '--data-dir', m.dataDir,
        '--listen-client-urls', m.clientUrl, '--advertise-client-urls', m.clientUrl,
        '--listen-peer-urls', m.peerUrl, '--initial-advertise-peer-urls', m.peerUrl,
        '--initial-cluster', this.members.map((x) => `${x.name}=${x.peerUrl}`).join(','),
        '--initial-cluster-state', state, '--initial-cluster-token', `fts-${this.topo.prefix}`,
        '--log-level', 'error', '--logger', 'zap',
        ...this.extraArgs,
      ],
      { label: `etcd ${m.name}` },
    );
  }

  /** Starts a member that was killed (its data dir is kept, so it rejoins). */
  async restart(m: EtcdMember, timeoutMs = 20_000): Promise<void> {
    if (m.proc && !m.proc.done) throw new Error(`${m.name} is running`);
    this.spawn(m, 'existing');
    await this.waitHealthy([m], timeoutMs);
  }

  /** Kills a member by pid (SIGKILL by default) and waits until it is gone. */
  async kill(m: EtcdMember, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = m.proc;
    if (!p || p.done) return;
    p.proc.kill(signal);
    await p.exited;
  }

  /** The running members. */
  get alive(): EtcdMember[] {
    return this.members.filter((m) => m.proc && !m.proc.done);
  }

  /** etcdctl against the given members (default: the running ones), API v3; returns stdout. */
  async etcdctl(args: string[], on: readonly EtcdMember[] = this.alive): Promise<string> {
    return this.topo.exec(this.topo.underlay, ['etcdctl', '--endpoints', on.map((m) => m.clientUrl).join(','), '--dial-timeout=2s', '--command-timeout=5s', ...args], {
      env: { ETCDCTL_API: '3' },
    });
  }

  /** `etcdctl endpoint status -w json` of one member, or null when it does not answer. */
  async status(m: EtcdMember): Promise<MemberStatus | null> {
    const r = await this.topo.run(
      this.topo.underlay,
      ['etcdctl', '--endpoints', m.clientUrl, '--dial-timeout=1s', '--command-timeout=2s', 'endpoint', 'status', '-w', 'json'],
      { env: { ETCDCTL_API: '3' } },
    );
    if (r.code !== 0) return null;
    // Read the IDs as text: JSON.parse would round them to doubles.
    const id = /"member_id":(\d+)/.exec(r.stdout)?.[1];
    // No "leader" field while an election runs ("errors":["etcdserver: no leader"]): 0, as etcd means it.
    const leader = /"leader":(\d+)/.exec(r.stdout)?.[1] ?? '0';
    const revision = /"revision":(\d+)/.exec(r.stdout)?.[1];
    const raftTerm = /"raft_term":(\d+)/.exec(r.stdout)?.[1];
    if (!id || !revision || !raftTerm) throw new Error(`unexpected endpoint status from ${m.name}:\n${r.stdout}`);
    return { member: m, id, leader, revision: Number(revision), raftTerm: Number(raftTerm) };
  }

  /** How many watchers the member serves (etcd_debugging_mvcc_watcher_total from its /metrics). */
  async watchers(m: EtcdMember): Promise<number> {
    const out = await this.topo.exec(this.topo.underlay, ['curl', '-sf', '--max-time', '3', `${m.clientUrl}/metrics`]);
    const v = /^etcd_debugging_mvcc_watcher_total (\d+)/m.exec(out)?.[1];
    if (v === undefined) throw new Error(`no etcd_debugging_mvcc_watcher_total in ${m.name}'s metrics`);
    return Number(v);
  }

  /** The member every running member names as leader, or null when they do not agree (yet) or none is elected. */
  async leader(): Promise<EtcdMember | null> {
    const st = (await Promise.all(this.alive.map((m) => this.status(m)))).filter((s): s is MemberStatus => s !== null);
    if (st.length === 0) return null;
    const ids = new Set(st.map((s) => s.leader));
    if (ids.size !== 1 || ids.has('0')) return null;
    const [lid] = ids;
    return st.find((s) => s.id === lid)?.member ?? null;
  }

  /** Makes `to` the leader (etcdctl move-leader, sent to the current leader). */
  async moveLeader(to: EtcdMember): Promise<void> {
    const cur = await this.leader();
    if (!cur) throw new Error('no leader to move from');
    if (cur === to) return;
    const st = await this.status(to);
    if (!st) throw new Error(`${to.name} does not answer`);
    await this.etcdctl(['move-leader', BigInt(st.id).toString(16)], [cur]);
  }

  private async waitHealthy(ms: readonly EtcdMember[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const dead = ms.find((m) => m.proc?.done);
      if (dead) throw new Error(`etcd ${dead.name} exited before becoming healthy:\n${dead.proc!.stderr}`);
      const r = await this.topo.run(
        this.topo.underlay,
        ['etcdctl', '--endpoints', ms.map((m) => m.clientUrl).join(','), '--dial-timeout=1s', '--command-timeout=2s', 'endpoint', 'health'],
        { env: { ETCDCTL_API: '3' } },
      );
      if (r.code === 0 && (await this.leader())) return;
      if (Date.now() > deadline) throw new Error(`etcd cluster not healthy after ${timeoutMs} ms: ${r.stderr}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  }
}
