// The flannel CNI plugin: a meta-plugin that combines its network config
// with flanneld's subnet.env and delegates the real work to another plugin
// (bridge by default). Behaviour: spec §11.2 (shared/reference/flannel-spec.md).
//
// runPlugin() is the whole plugin as a function of (environment, stdin);
// src/cmd/cni/main.ts feeds it the real ones and writes the outcome.
//
// Behaviour on top of upstream flannel (cni-plugin flannel.go):
//  * ADD: as in flannel, a failed delegate ADD keeps the saved delegate
//    config: the delegate may have created interfaces (and released its IP)
//    before it failed, and the runtime's DEL must still reach it to undo
//    them. The config goes only after a successful DEL. A delegate that is
//    not installed never ran, so nothing is saved for it.
//  * CHECK: upstream's is a no-op. Here CHECK runs the delegate's CHECK with
//    the saved config, plus the runtime's prevResult/runtimeConfig and the
//    request's cniVersion; with no saved config the container is unknown to
//    flannel → error code 3.
//    Routes without a gateway in that prevResult (flannel's own route to
//    FLANNEL_NETWORK) get the gateway of their family's IP first: that is the
//    route the delegate actually installed (libcni ConfigureIface), and the
//    reference plugins before v1.3.0 (Debian ships 1.1.1) fail CHECK on a
//    gateway-less expected route (containernetworking/plugins#886).
//  * A missing subnet.env is code 11 (try again later: flanneld has not
//    written it yet); missing/invalid variables in it are code 100.

import { CniError, ErrorCode, asCniError } from './errors.js';
import { buildDelegateConf, loadFlannelSubnetEnv, parseNetConf, peekCniVersion, validateContainerID, validateIfName, type FlannelNetConf } from './config.js';
import { execPlugin, findInPath, splitCniPath, type CniCommand } from './invoke.js';
import { isObject, stableStringify, type JsonObject } from './json.js';
import { readScratchConf, removeScratchConf, saveScratchConf } from './store.js';
import { CURRENT_VERSION, SUPPORTED_VERSIONS, checkAllowsCheck, checkConfigVersion, versionInfo } from './version.js';

export interface PluginInput {
  env: NodeJS.ProcessEnv;
  stdin: Buffer | string;
  /** Delegate timeout (default 60 s). */
  delegateTimeoutMs?: number | undefined;
  /** Diagnostics (and the delegate's stderr); default: dropped. */
  stderr?: (text: string) => void;
}

export interface PluginOutcome {
  exitCode: number;
  /** Exactly what goes to stdout (result, version info, error JSON, or nothing). */
  stdout: string;
}

const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION'] as const;
type Command = (typeof COMMANDS)[number];

/** Which CNI_* variables each command needs (libcni skel's table). */
const REQUIRED: Record<Exclude<Command, 'VERSION'>, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
};

export const ABOUT = 'CNI Plugin flannel (flannel-ts): delegates to bridge (or delegate.type) with flanneld\'s subnet.env';

interface Ctx {
  env: NodeJS.ProcessEnv;
  conf: FlannelNetConf;
  containerID: string;
  cniPath: string[];
  timeoutMs?: number | undefined;
  stderr: (text: string) => void;
}

export async function runPlugin(input: PluginInput): Promise<PluginOutcome> {
  const stderr = input.stderr ?? (() => {});
  try {
    const stdout = await dispatch(input, stderr);
    return { exitCode: 0, stdout };
  } catch (e) {
    const err = asCniError(e);
    // Errors are reported in the request's version when it is one we speak.
    const v = peekCniVersion(input.stdin);
    const cniVersion = v && SUPPORTED_VERSIONS.includes(v) ? v : CURRENT_VERSION;
    stderr(`flannel: ${err.message}\n`);
    return { exitCode: 1, stdout: JSON.stringify(err.toJSON(cniVersion)) + '\n' };
  }
}

async function dispatch(input: PluginInput, stderr: (t: string) => void): Promise<string> {
  const env = input.env;
  const cmd = env.CNI_COMMAND ?? '';
  if (cmd === '') {
    stderr(`${ABOUT}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`);
    throw new CniError(ErrorCode.InvalidEnvironmentVariables, 'required env variables [CNI_COMMAND] missing', `CNI_COMMAND must be one of ${COMMANDS.join(', ')}`);
  }
  if (!(COMMANDS as readonly string[]).includes(cmd)) {
    throw new CniError(ErrorCode.InvalidEnvironmentVariables, `unknown CNI_COMMAND: ${cmd}`, `supported: ${COMMANDS.join(', ')}`);
  }
  if (cmd === 'VERSION') return JSON.stringify(versionInfo()) + '\n';

  const command = cmd as Exclude<Command, 'VERSION'>;
  const missing = REQUIRED[command].filter((k) => !env[k]);
  if (missing.length) throw new CniError(ErrorCode.InvalidEnvironmentVariables, `required env variables [${missing.join(',')}] missing`);

  const conf = parseNetConf(input.stdin);
  const containerID = env.CNI_CONTAINERID!;
  validateContainerID(containerID);
  validateIfName(env.CNI_IFNAME!);
  checkConfigVersion(conf.cniVersion);

  const ctx: Ctx = { env, conf, containerID, cniPath: splitCniPath(env.CNI_PATH), timeoutMs: input.delegateTimeoutMs, stderr };
  switch (command) {
    case 'ADD':
      return cmdAdd(ctx);
    case 'DEL':
      return cmdDel(ctx);
    case 'CHECK':
      checkAllowsCheck(conf.cniVersion);
      return cmdCheck(ctx);
  }
}

function delegate(ctx: Ctx, type: string, command: CniCommand, config: string): Promise<string> {
  return execFound(ctx, findInPath(type, ctx.cniPath), command, config);
}

function execFound(ctx: Ctx, file: string, command: CniCommand, config: string): Promise<string> {
  return execPlugin(file, command, config, { env: ctx.env, timeoutMs: ctx.timeoutMs, onStderr: ctx.stderr });
}

async function cmdAdd(ctx: Ctx): Promise<string> {
  const fenv = loadFlannelSubnetEnv(ctx.conf.subnetFile);
  const d = buildDelegateConf(ctx.conf, fenv);
  const bytes = stableStringify(d);
  const file = findInPath(d.type as string, ctx.cniPath);
  // Saved before the delegate runs, so a DEL after a half-done ADD still
  // finds it; kept when the ADD fails, for the same reason.
  saveScratchConf(ctx.conf.dataDir, ctx.containerID, bytes);
  const result = await execFound(ctx, file, 'ADD', bytes);
  if (!isJsonObject(result)) {
    // The delegate claims success but gave no usable result: undo it. If the
    // undo fails too, the saved config stays for the runtime's DEL.
    try {
      await execFound(ctx, file, 'DEL', bytes);
      removeScratchConf(ctx.conf.dataDir, ctx.containerID);
    } catch (e) {
      ctx.stderr(`flannel: rollback DEL after unusable ADD result failed: ${asCniError(e).message}\n`);
    }
    throw new CniError(ErrorCode.DelegateFailed, `delegate plugin ${String(d.type)} printed an unusable result`, JSON.stringify(result.slice(0, 200)));
  }
  // The delegate's result is ours, byte for byte.
  return result;
}

function isJsonObject(s: string): boolean {
  try {
    return isObject(JSON.parse(s));
  } catch {
    return false;
  }
}

/** The saved delegate config, decoded; null (with a warning) when it is unusable. */
function decodeSaved(ctx: Ctx, text: string): (JsonObject & { type: string }) | null {
  try {
    const v: unknown = JSON.parse(text);
    if (isObject(v) && typeof v.type === 'string' && v.type !== '') return v as JsonObject & { type: string };
  } catch {
    /* fall through */
  }
  ctx.stderr(`flannel: saved delegate config for ${ctx.containerID} in ${ctx.conf.dataDir} is corrupt; ignoring it\n`);
  return null;
}

async function cmdDel(ctx: Ctx): Promise<string> {
  const text = readScratchConf(ctx.conf.dataDir, ctx.containerID);
  // Nothing saved: never added, or already deleted. DEL is idempotent.
  if (text === null) return '';
  const saved = decodeSaved(ctx, text);
  if (saved) await delegate(ctx, saved.type, 'DEL', text);
  // Only after the delegate succeeded (or there is nothing it could do).
  removeScratchConf(ctx.conf.dataDir, ctx.containerID);
  return '';
}

async function cmdCheck(ctx: Ctx): Promise<string> {
  const text = readScratchConf(ctx.conf.dataDir, ctx.containerID);
  if (text === null) {
    throw new CniError(ErrorCode.UnknownContainer, `container ${ctx.containerID} is unknown to flannel`, `no saved delegate config in ${ctx.conf.dataDir}`);
  }
  const saved = decodeSaved(ctx, text);
  if (!saved) throw new CniError(ErrorCode.IOFailure, `saved delegate config for container ${ctx.containerID} is corrupt`, ctx.conf.dataDir);
  const c: JsonObject = { ...saved, cniVersion: ctx.conf.cniVersion };
  if (ctx.conf.prevResult !== undefined) c.prevResult = withRouteGateways(ctx.conf.prevResult);
  if (ctx.conf.runtimeConfig) c.runtimeConfig = ctx.conf.runtimeConfig;
  await delegate(ctx, saved.type, 'CHECK', stableStringify(c));
  return '';
}

/**
 * prevResult with each gateway-less route given the gateway of the first IP
 * of its family, as ConfigureIface installs it. Anything unexpected is left
 * as it is (the delegate judges it).
 */
export function withRouteGateways(prev: unknown): unknown {
  if (!isObject(prev) || !Array.isArray(prev.routes) || !Array.isArray(prev.ips)) return prev;
  const gw = (v6: boolean): string | undefined => {
    for (const ip of prev.ips as unknown[]) {
      if (isObject(ip) && typeof ip.gateway === 'string' && ip.gateway.includes(':') === v6) return ip.gateway;
    }
    return undefined;
  };
  const routes = prev.routes.map((r: unknown) => {
    if (!isObject(r) || typeof r.dst !== 'string' || (r.gw !== undefined && r.gw !== null && r.gw !== '')) return r;
    const g = gw(r.dst.includes(':'));
    return g ? { ...r, gw: g } : r;
  });
  return { ...prev, routes };
}
