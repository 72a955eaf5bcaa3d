import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TextLogger } from './log.js';

test('text logs: one klog-style line per event, level letter, component, key=value fields', () => {
  const lines: string[] = [];
  const log = new TextLogger(1, '', (l) => lines.push(l), () => new Date(2026, 10, 30, 9, 5, 7, 42));
  log.info('wrote /run/flannel/subnet.env; ready');
  log.child('kube').warn('ignoring node n2', { reason: 'bad public-ip', peers: 3, ok: false });
  log.child('kube').child('watch').error('two\nlines', { v: 'a b' });
  log.debug('not shown at -v=0');
  assert.deepEqual(lines, [
    `I1130 09:05:07.042 ${process.pid} flanneld] wrote /run/flannel/subnet.env; ready\n`,
    `W1130 09:05:07.042 ${process.pid} kube] ignoring node n2 reason="bad public-ip" peers=3 ok=false\n`,
    `E1130 09:05:07.042 ${process.pid} kube/watch] two | lines v="a b"\n`,
  ]);
  const dbg: string[] = [];
  new TextLogger(0, 'x', (l) => dbg.push(l)).debug('shown at -v=1');
  assert.match(dbg[0]!, /^D\d{4} [\d:.]+ \d+ x\] shown at -v=1\n$/);
});
