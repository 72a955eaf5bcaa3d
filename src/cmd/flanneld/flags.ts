// flanneld's flags (spec §1.1) with Go flag semantics: -flag and --flag,
// -flag=value and -flag value, bare booleans, repeatable --iface/--iface-regex,
// and FLANNELD_* environment variables for flags not given on the command
// line (spec §1.2; empty values ignored, repeatable flags take one value).

import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_ETCD_ENDPOINTS, DEFAULT_ETCD_PREFIX } from '../../store/etcd/defaults.js';
import { DEFAULT_SUBNET_FILE } from '../../subnet/subnet-env.js';
import { FlannelError } from '../../errors.js';

export interface FlanneldFlags {
  etcdEndpoints: string;
  etcdPrefix: string;
  etcdKeyfile: string;
  etcdCertfile: string;
  etcdCafile: string;
  etcdUsername: string;
  etcdPassword: string;
  iface: string[];
  ifaceRegex: string[];
  ifaceCanReach: string;
  subnetFile: string;
  publicIp: string;
  publicIpv6: string;
  subnetLeaseRenewMargin: number;
  ipMasq: boolean;
  ipMasqFullyRandomDisable: boolean;
  kubeSubnetMgr: boolean;
  kubeApiUrl: string;
  kubeAnnotationPrefix: string;
  kubeconfigFile: string;
  version: boolean;
  healthzIp: string;
  healthzPort: number;
  iptablesResync: number;
  iptablesForwardRules: boolean;
  ipBlackholeRoute: boolean;
  netConfigPath: string;
  /** true when --net-config-path came from the command line or env, not the default */
  netConfigPathSet: boolean;
  setNodeNetworkUnavailable: boolean;
  /** true when --set-node-network-unavailable came from the command line or env */
  setNodeNetworkUnavailableSet: boolean;
  v: number;
  /** flannel-ts extension: "etcd" (default) or "local:/path/leases.db" */
  store: string;
  /** flannel-ts extension: "json", "text", or "" (text when stderr is a terminal, else json) */
  logFormat: string;
  /** flannel-ts (issue 12): L2 segments this node is the edge gateway to (repeatable, comma lists) */
  edgeNetwork: string[];
  /** flannel-ts: the interface each --edge-network is on (one for all, or one per network) */
  edgeIface: string[];
  /** flannel-ts: masquerade pod traffic leaving to the edge segments */
  edgeMasq: boolean;
  /** flannel-ts: pod subnets allowed to reach the edge segments (comma list); "" = all */
  edgeAllow: string;
  /** $FLANNEL_ETCD_CLIENT: "" or "gateway" (default), or "etcd3" for the gRPC client (kept for one release) */
  etcdClient: string;
}

export class FlagError extends FlannelError {
  static override readonly defaultCode: string = 'FLAG_INVALID';
  override name = 'FlagError';
}

interface Spec {
  name: string;
  kind: 'string' | 'int' | 'bool' | 'list';
  dflt: string | number | boolean | string[];
  help: string;
}

const SPECS: Spec[] = [
  { name: 'etcd-endpoints', kind: 'string', dflt: DEFAULT_ETCD_ENDPOINTS, help: 'a comma-delimited list of etcd endpoints' },
  { name: 'etcd-prefix', kind: 'string', dflt: DEFAULT_ETCD_PREFIX, help: 'etcd prefix' },
  { name: 'etcd-keyfile', kind: 'string', dflt: '', help: 'SSL key file used to secure etcd communication' },
  { name: 'etcd-certfile', kind: 'string', dflt: '', help: 'SSL certification file used to secure etcd communication' },
  { name: 'etcd-cafile', kind: 'string', dflt: '', help: 'SSL Certificate Authority file used to secure etcd communication' },
  { name: 'etcd-username', kind: 'string', dflt: '', help: 'username for BasicAuth to etcd' },
  { name: 'etcd-password', kind: 'string', dflt: '', help: 'password for BasicAuth to etcd' },
  { name: 'iface', kind: 'list', dflt: [], help: 'interface to use (IP or name) for inter-host communication; may be repeated' },
  { name: 'iface-regex', kind: 'list', dflt: [], help: 'regex of IP or name of the interface to use; may be repeated' },
  { name: 'iface-can-reach', kind: 'string', dflt: '', help: 'detect the interface to use by the IP it can reach (not yet supported)' },
  { name: 'subnet-file', kind: 'string', dflt: DEFAULT_SUBNET_FILE, help: 'filename where env variables (subnet, MTU, ...) will be written to' },
  { name: 'public-ip', kind: 'string', dflt: '', help: 'IP accessible by other nodes for inter-host communication' },
  { name: 'public-ipv6', kind: 'string', dflt: '', help: 'IPv6 accessible by other nodes for inter-host communication' },
  { name: 'subnet-lease-renew-margin', kind: 'int', dflt: 60, help: 'subnet lease renewal margin, in minutes, ranging from 1 to 1439' },
  { name: 'ip-masq', kind: 'bool', dflt: false, help: 'setup IP masquerade rule for traffic destined outside of overlay network' },
  { name: 'ip-masq-fully-random-disable', kind: 'bool', dflt: false, help: 'disable fully random source port masquerading' },
  { name: 'kube-subnet-mgr', kind: 'bool', dflt: false, help: 'contact the Kubernetes API for subnet assignment instead of etcd' },
  { name: 'kube-api-url', kind: 'string', dflt: '', help: 'Kubernetes API server URL' },
  { name: 'kube-annotation-prefix', kind: 'string', dflt: 'flannel.alpha.coreos.com', help: 'Kubernetes annotation prefix' },
  { name: 'kubeconfig-file', kind: 'string', dflt: '', help: 'kubeconfig file location' },
  { name: 'version', kind: 'bool', dflt: false, help: 'print version and exit' },
  { name: 'healthz-ip', kind: 'string', dflt: '0.0.0.0', help: 'the IP address for healthz server to listen' },
  { name: 'healthz-port', kind: 'int', dflt: 0, help: 'the port for healthz server to listen (0 to disable)' },
  { name: 'iptables-resync', kind: 'int', dflt: 5, help: 'resync period for iptables rules, in seconds' },
  { name: 'iptables-forward-rules', kind: 'bool', dflt: true, help: 'add default accept rules to FORWARD chain in iptables' },
  { name: 'ip-blackhole-route', kind: 'bool', dflt: false, help: 'add a blackhole route for the local subnet' },
  { name: 'net-config-path', kind: 'string', dflt: '/etc/kube-flannel/net-conf.json', help: 'path to the network configuration file (kube mode; in etcd mode read instead of etcd when given)' },
  { name: 'set-node-network-unavailable', kind: 'bool', dflt: true, help: 'set NetworkUnavailable=False on the node (kube mode)' },
  { name: 'v', kind: 'int', dflt: 0, help: 'log verbosity (0 info, 1+ debug)' },
  { name: 'store', kind: 'string', dflt: 'etcd', help: 'flannel-ts: lease store, "etcd" or "local:/path/leases.db"' },
  { name: 'edge-network', kind: 'list', dflt: [], help: 'flannel-ts (vxlan): CIDR of an L2 segment this node is the gateway to; published in the lease (EdgeNetworks), routed by every node; may be repeated or a comma list' },
  { name: 'edge-iface', kind: 'list', dflt: [], help: 'flannel-ts (vxlan): the interface (e.g. a bridge holding the NIC) each --edge-network is on, holding an address in it; one for all or one per network' },
  { name: 'edge-masq', kind: 'bool', dflt: false, help: 'flannel-ts (vxlan): masquerade pod traffic leaving to the edge segments, so their hosts need no route back' },
  { name: 'edge-allow', kind: 'string', dflt: '', help: 'flannel-ts (vxlan): comma list of pod CIDRs allowed to reach the edge segments (default: the whole Network)' },
  { name: 'log-format', kind: 'string', dflt: '', help: 'flannel-ts: "text" (one readable line per event) or "json" (for log shippers); empty: text on a terminal, else json' },
];

/** Go's flag help shows each default; so do we (and a bool's is plainly "false" or "true"). */
function describeFlag(s: Spec): string {
  if (s.kind === 'list') return s.help;
  if (s.kind === 'bool' || s.kind === 'int') return `${s.help} (default ${String(s.dflt)})`;
  return s.dflt === '' ? s.help : `${s.help} (default ${JSON.stringify(s.dflt)})`;
}

const BY_NAME = new Map(SPECS.map((s) => [s.name, s]));

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Go's flag package accepts -name; commander wants --name. */
function normalise(argv: readonly string[]): string[] {
  return argv.map((a) => {
    const m = /^-([a-z][a-z0-9-]*)(=.*)?$/.exec(a);
    if (m && BY_NAME.has(m[1]!) && m[1]!.length > 1) return `--${m[1]}${m[2] ?? ''}`;
    if (m && m[1] === 'v') return `--v${m[2] ?? ''}`;
    return a;
  });
}

function parseBoolText(name: string, v: string): boolean {
  if (/^(1|t|true|T|TRUE|True)$/.test(v)) return true;
  if (/^(0|f|false|F|FALSE|False)$/.test(v)) return false;
  throw new FlagError(`--${name}: invalid boolean value "${v}"`);
}

function parseIntText(name: string, v: string): number {
  if (!/^-?\d+$/.test(v.trim())) throw new FlagError(`--${name}: invalid integer value "${v}"`);
  return Number(v);
}

export type FlagsResult = { kind: 'flags'; flags: FlanneldFlags } | { kind: 'help'; text: string };

export function parseFlanneldFlags(argv: readonly string[], env: Record<string, string | undefined>): FlagsResult {
  const cmd = new Command('flanneld').exitOverride().allowExcessArguments(false);
  let helpText = '';
  cmd.configureOutput({ writeOut: (s) => (helpText += s), writeErr: (s) => (helpText += s) });
  for (const s of SPECS) {
    let o: Option;
    if (s.kind === 'bool') {
      // Go booleans: --flag, --flag=true|false (not "--flag false").
      o = new Option(`--${s.name} [bool]`, describeFlag(s)).argParser((v: string | undefined) => (v === undefined ? true : parseBoolText(s.name, v)));
      o.preset(true);
    } else if (s.kind === 'list') {
      o = new Option(`--${s.name} <value>`, describeFlag(s)).argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    } else if (s.kind === 'int') {
      o = new Option(`--${s.name} <n>`, describeFlag(s)).argParser((v: string) => parseIntText(s.name, v));
    } else {
      o = new Option(`--${s.name} <value>`, describeFlag(s));
    }
    cmd.addOption(o);
  }
  cmd.helpOption('-h, --help', 'show this help');
  // Our descriptions carry the defaults; commander's "(preset: true)" on
  // booleans reads as if they defaulted to true, so leave it out.
  cmd.configureHelp({ optionDescription: (opt) => opt.description });
  try {
    cmd.parse(normalise(argv), { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed') return { kind: 'help', text: helpText };
      throw new FlagError(e.message.replace(/^error: /, ''));
    }
    throw e;
  }
  const given = cmd.opts() as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  let netConfigPathSet = false;
  let setNodeNetworkUnavailableSet = false;
  // flannel prints its version before it reads FLANNELD_*: with --version a
  // bad variable is no error.
  const readEnv = given.version !== true;
  for (const s of SPECS) {
    const key = camel(s.name);
    let v = given[key];
    if (v === undefined) {
      const envName = 'FLANNELD_' + s.name.toUpperCase().replace(/[-.]/g, '_');
      const ev = env[envName];
      if (readEnv && ev !== undefined && ev !== '' && s.name !== 'version') {
        if (s.kind === 'bool') v = parseBoolText(s.name, ev);
        else if (s.kind === 'int') v = parseIntText(s.name, ev);
        else if (s.kind === 'list') v = [ev];
        else v = ev;
      }
    }
    if (s.name === 'net-config-path' && v !== undefined) netConfigPathSet = true;
    if (s.name === 'set-node-network-unavailable' && v !== undefined) setNodeNetworkUnavailableSet = true;
    out[key] = v ?? s.dflt;
  }
  out.netConfigPathSet = netConfigPathSet;
  out.setNodeNetworkUnavailableSet = setNodeNetworkUnavailableSet;
  out.etcdClient = env.FLANNEL_ETCD_CLIENT ?? '';
  return { kind: 'flags', flags: out as unknown as FlanneldFlags };
}
