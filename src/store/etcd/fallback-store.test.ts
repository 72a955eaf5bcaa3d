import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StoreError } from '../store.js';
import { GatewayError, GrpcCode } from './gateway-client.js';
import { isGatewayMissing, isGatewaySelfDialFailure } from './fallback-store.js';

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

test('an etcd without the /v3/ gateway (before 3.4) is recognised from the 404 answer; other protocol errors are not', () => {
  const wrapped = (e: GatewayError) => new StoreError(`etcd: list /coreos.com/network/subnets: ${e.message}`, true, { cause: e });
  assert.equal(isGatewayMissing(wrapped(new GatewayError('127.0.0.1:2379: answered 404 with no JSON: 404 page not found', 'protocol', null, false))), true);
  assert.equal(isGatewayMissing(wrapped(new GatewayError('127.0.0.1:2379: no etcd v3 JSON gateway here (HTTP 404; etcd 3.4 or later is needed)', 'protocol', null, false))), true);
  assert.equal(isGatewayMissing(wrapped(new GatewayError('127.0.0.1:2379: watch answered 503', 'protocol', null, true))), false);
  assert.equal(isGatewayMissing(wrapped(new GatewayError('connect ECONNREFUSED 127.0.0.1:2379', 'connect', null, true))), false);
});
