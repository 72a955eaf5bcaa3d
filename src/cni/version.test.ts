import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CniError, ErrorCode } from './errors.js';
import { checkAllowsCheck, checkConfigVersion, compareVersions, SUPPORTED_VERSIONS, versionInfo } from './version.js';

test('VERSION info lists what the plugin supports', () => {
  assert.equal(JSON.stringify(versionInfo()), '{"cniVersion":"1.0.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0"]}');
  for (const v of ['0.3.1', '0.4.0', '1.0.0']) assert.ok(SUPPORTED_VERSIONS.includes(v));
});

test('config versions must match a supported version exactly (code 1)', () => {
  for (const v of SUPPORTED_VERSIONS) checkConfigVersion(v);
  for (const v of ['1.1.0', '0.3', '2.0.0', 'latest']) {
    assert.throws(
      () => checkConfigVersion(v),
      (e: unknown) => e instanceof CniError && e.code === ErrorCode.IncompatibleVersion && e.msg === 'incompatible CNI versions' && e.details.includes(`config is "${v}"`),
    );
  }
});

test('CHECK needs config version 0.4.0 or later', () => {
  checkAllowsCheck('0.4.0');
  checkAllowsCheck('1.0.0');
  for (const v of ['0.1.0', '0.3.1']) {
    assert.throws(() => checkAllowsCheck(v), (e: unknown) => e instanceof CniError && e.code === ErrorCode.IncompatibleVersion && /does not allow CHECK/.test(e.msg));
  }
});

test('version comparison is numeric', () => {
  assert.equal(compareVersions('0.10.0', '0.4.0'), 1);
  assert.equal(compareVersions('0.3.1', '0.4.0'), -1);
  assert.equal(compareVersions('1.0.0', '1.0.0'), 0);
  assert.throws(() => compareVersions('1.0', '1.0.0'), (e: unknown) => e instanceof CniError && e.code === ErrorCode.DecodingFailure);
});
