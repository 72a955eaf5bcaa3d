import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatIPv4Net, parseIPv4Net, parseIPv6Net } from '../lease/ip.js';
import { readPreviousSubnets, renderSubnetEnv, writeSubnetEnv } from './subnet-env.js';

test('subnet.env content and order match flannel (docs example)', () => {
  assert.equal(
    renderSubnetEnv({ network: parseIPv4Net('10.42.0.0/16'), subnet: parseIPv4Net('10.42.0.0/24'), ipv6Network: parseIPv6Net('2001:cafe:42::/56'), ipv6Subnet: parseIPv6Net('2001:cafe:42::/64'), mtu: 1450, ipMasq: true }),
    'FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.0.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
  );
});

test('written atomically with mode 0644 and read back as the previous subnet', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-env-'));
  try {
    const f = path.join(dir, 'sub', 'subnet.env');
    const old = process.umask(0o077);
    try {
      writeSubnetEnv(f, { network: parseIPv4Net('10.5.0.0/16'), subnet: parseIPv4Net('10.5.72.0/24'), ipv6Network: null, ipv6Subnet: null, mtu: 1450, ipMasq: false });
    } finally {
      process.umask(old);
    }
    assert.equal(statSync(f).mode & 0o777, 0o644);
    assert.equal(formatIPv4Net(readPreviousSubnets(f).subnet!), '10.5.72.0/24');
    writeFileSync(f, 'FLANNEL_SUBNET=10.5.1.1/24,10.6.1.1/24\n');
    assert.equal(readPreviousSubnets(f).subnet, null, 'two CIDRs count as none');
    writeFileSync(f, 'FLANNEL_SUBNET=bogus,10.6.1.1/24\n');
    assert.equal(formatIPv4Net(readPreviousSubnets(f).subnet!), '10.6.1.0/24', 'invalid entries skipped');
    assert.deepEqual(readPreviousSubnets(path.join(dir, 'missing')), { subnet: null, subnet6: null });
    assert.ok(!readFileSync(f, 'utf8').includes('tmp'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
