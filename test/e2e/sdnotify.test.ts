// The real flanneld under a stand-in for systemd: the test owns a unix
// datagram socket, passes it as NOTIFY_SOCKET (the real protocol), and checks
// that flanneld sends exactly "READY=1", once, after subnet.env is written.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MSG_DONTWAIT, POLLIN, SOCK_CLOEXEC, SOCK_NONBLOCK } from '../../src/netlink/constants.js';
import { libc } from '../../src/netlink/libc.js';
import { AF_UNIX, SOCK_DGRAM, sockaddrUn } from '../../src/daemon/sdnotify.js';
import { isRoot, Topology } from '../helpers/netns.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const dir = mkdtempSync(path.join(tmpdir(), 'fts-sdn-e2e-'));
let topo: Topology | undefined;
after(async () => {
  await topo?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

test('flanneld sends READY=1 over NOTIFY_SOCKET once subnet.env is written', { skip }, async () => {
  const lib = libc();
  const sock = path.join(dir, 'notify.sock');
  const fd = lib.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  assert.ok(fd >= 0);
  try {
    const { addr, len } = sockaddrUn(sock);
    assert.equal(lib.bind(fd, addr, len), 0, `bind errno ${lib.errno()}`);
    topo = await Topology.create({ hosts: 1, podsPerHost: 0 });
    const h = topo.hosts[0]!;
    const netConf = path.join(dir, 'net-conf.json');
    writeFileSync(netConf, '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
    const f = topo.startFlanneld(h, [`--store=local:${path.join(dir, 'leases.db')}`, `--net-config-path=${netConf}`, '--iface=eth0'], { env: { NOTIFY_SOCKET: sock } });
    const got: string[] = [];
    let envAtReady: boolean | null = null;
    const pfd = Buffer.alloc(8);
    pfd.writeInt32LE(fd, 0);
    pfd.writeInt16LE(POLLIN, 4);
    const deadline = Date.now() + 20_000;
    while (got.length === 0 && Date.now() < deadline) {
      if (lib.poll(pfd, 1, 0) > 0) {
        const buf = Buffer.alloc(4096);
        const n = lib.recv(fd, buf, buf.length, MSG_DONTWAIT);
        if (n > 0) {
          envAtReady = existsSync(topo.subnetFile(h));
          got.push(buf.subarray(0, n).toString());
        }
      } else await new Promise((r) => setTimeout(r, 20));
      if (f.proc.exitCode !== null) throw new Error(`flanneld exited:\n${f.raw.join('\n')}`);
    }
    assert.deepEqual(got, ['READY=1']);
    assert.equal(envAtReady, true, 'subnet.env was written before READY=1');
    await f.waitFor((l) => /notified systemd: READY=1/.test(l.msg), 5000, 'log line');
    await new Promise((r) => setTimeout(r, 300));
    const buf = Buffer.alloc(64);
    assert.equal(lib.recv(fd, buf, buf.length, MSG_DONTWAIT), -1, 'exactly one notification');
    assert.equal(await f.stop(), 0);
  } finally {
    lib.close(fd);
  }
});
