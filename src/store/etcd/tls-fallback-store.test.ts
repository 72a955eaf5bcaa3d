import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StoreError } from '../store.js';
import { GatewayError, GrpcCode } from './gateway-client.js';
import { isGatewaySelfDialFailure } from './tls-fallback-store.js';

test('the gateway failing to dial its own gRPC port is recognised in every form etcd words it; etcd being unreachable is not', () => {
  const wrapped = (e: GatewayError) => new StoreError(`etcd: get /coreos.com/network/config: ${e.message}`, true, { cause: e });
  for (const m of [
    'connection closed',
    'write tcp 127.0.0.1:57918->127.0.0.1:45789: write: broken pipe',
    'read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer',
    'authentication handshake failed: remote error: tls: bad certificate',
  ]) {
    assert.equal(isGatewaySelfDialFailure(wrapped(new GatewayError(m, 'server', GrpcCode.Unavailable, true))), true, m);
  }
  // etcd itself down: no server answer at all
  assert.equal(isGatewaySelfDialFailure(wrapped(new GatewayError('connect ECONNREFUSED 127.0.0.1:2379', 'connect', null, true))), false);
  // a server answer that is not the self-dial failure
  assert.equal(isGatewaySelfDialFailure(wrapped(new GatewayError('etcdserver: leader changed', 'server', GrpcCode.Unavailable, true))), false);
});
