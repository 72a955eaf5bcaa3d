// The KernelNet contract (src/testing/kernel-contract.ts) against the real
// kernel through RtNetlink, with the socket on this thread (blocking, and with
// its kernel waits on the thread pool, as the daemon uses it) and in the
// worker thread. Runs in a private namespace (see private-netns.ts);
// each case starts from two fresh veth pairs.
import { fileURLToPath } from 'node:url';
import { privilegedSkip } from '../../src/testing/privileged.js';
import { kernelContract, type KernelFixture } from '../../src/testing/kernel-contract.js';
import { RtNetlink } from '../../src/kernel/rtnetlink.js';
import { innerNetns, runInPrivateNetns } from './private-netns.js';
import { sh, shOk } from '../helpers/netns-sync.js';

const ENV = 'FTS_KCONTRACT_NS';

function freshDevices(): void {
  // only ever inside the private namespace (innerNetns checked it)
  for (const l of JSON.parse(sh('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string }>) {
    if (l.ifname !== 'lo') shOk('ip', ['link', 'del', l.ifname]);
  }
  sh('ip', ['link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul0p']);
  sh('ip', ['link', 'add', 'ot0', 'type', 'veth', 'peer', 'name', 'ot0p']);
  for (const d of ['ul0', 'ul0p', 'ot0', 'ot0p']) sh('ip', ['link', 'set', d, 'up']);
  sh('ip', ['addr', 'add', '192.0.2.1/24', 'dev', 'ul0']);
  sh('ip', ['addr', 'add', '198.51.100.1/24', 'dev', 'ot0']);
}

if (innerNetns(ENV)) {
  for (const mode of ['inline', 'worker', 'async'] as const) {
    kernelContract(`RtNetlink (${mode} socket)`, async (): Promise<KernelFixture> => {
      freshDevices();
      const k = mode === 'worker' ? RtNetlink.openInWorker() : mode === 'async' ? RtNetlink.openAsync() : RtNetlink.open();
      const underlay = await k.getLinkByName('ul0');
      const other = await k.getLinkByName('ot0');
      if (!underlay || !other) throw new Error('fixture devices missing');
      return { k, underlay, other, close: async () => k.close() };
    });
  }
} else {
  runInPrivateNetns({
    title: 'KernelNet contract against the real kernel (private netns)',
    prefix: 'ftskc-',
    envVar: ENV,
    file: fileURLToPath(import.meta.url),
    skip: privilegedSkip('creates a network namespace', ['ip']),
  });
}
