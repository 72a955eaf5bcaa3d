// CNI version negotiation, as libcni's skel does it: the network config's
// cniVersion (absent or empty means "0.1.0") must be one of the versions the
// plugin supports, exactly; CHECK additionally needs a config version >= 0.4.0.
//
// The plugin supports every version its delegate (the reference bridge plugin)
// supports, because the result it prints is the delegate's, unchanged.

import { CniError, ErrorCode } from './errors.js';

export const CURRENT_VERSION = '1.0.0';
export const SUPPORTED_VERSIONS: readonly string[] = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0'];

/** The VERSION command's output object. */
export function versionInfo(): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion: CURRENT_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/** "1.0.0" → [1,0,0]; throws CniError(6) on anything else. */
export function parseVersion(v: string): [number, number, number] {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  if (!m) throw new CniError(ErrorCode.DecodingFailure, `invalid version "${v}"`, 'expected MAJOR.MINOR.PATCH');
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
  return 0;
}

/** Throws CniError(1) unless the config version is one the plugin supports. */
export function checkConfigVersion(configVersion: string): void {
  if (!SUPPORTED_VERSIONS.includes(configVersion)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      'incompatible CNI versions',
      `config is "${configVersion}", plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`,
    );
  }
}

/** CHECK was introduced in spec 0.4.0; older configs must not be CHECKed. */
export function checkAllowsCheck(configVersion: string): void {
  if (compareVersions(configVersion, '0.4.0') < 0) {
    throw new CniError(ErrorCode.IncompatibleVersion, 'config version does not allow CHECK', `config is "${configVersion}", CHECK needs 0.4.0 or later`);
  }
}
