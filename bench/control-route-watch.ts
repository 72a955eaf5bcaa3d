// Runs inside a host namespace for bench/control.ts: subscribes to rtnetlink
// link and IPv4 route notifications and prints one line per route change on
// device <dev>, stamped with a high-resolution wall clock taken when the
// notification reaches this process (not when the bench gets to read it):
//
//   R <ms since epoch> + 10.100.3.0/24      route added/replaced
//   R <ms since epoch> - 10.100.3.0/24      route removed
//   O <ms since epoch>                      the kernel dropped notifications
//   ready                                   subscribed; later changes are seen
//
//   node control-route-watch.js <dev>
import { NetlinkSubscriber } from '../src/netlink/subscriber.js';
import { RtNetlink } from '../src/kernel/rtnetlink.js';
import { wallNow } from './control-peers.js';

const dev = process.argv[2] ?? 'flannel.1';
let out: string[] = [];
let scheduled = false;
const emit = (line: string) => {
  out.push(line);
  if (!scheduled) {
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      const text = out.join('\n') + '\n';
      out = [];
      process.stdout.write(text);
    });
  }
};

// The device's ifindex, followed through deletion and re-creation.
let ifindex: number | undefined;
const sub = await NetlinkSubscriber.start({
  groups: ['link', 'route'],
  rcvbuf: 32 << 20,
  pollIntervalMs: 100,
  onEvent: (e) => {
    if (e.kind === 'link') {
      if (e.link.name === dev) ifindex = e.action === 'new' ? e.link.index : undefined;
      return;
    }
    if (e.kind !== 'route' || ifindex === undefined || e.route.oif !== ifindex) return;
    emit(`R ${wallNow().toFixed(3)} ${e.action === 'new' ? '+' : '-'} ${e.route.dst}`);
  },
  onOverrun: () => emit(`O ${wallNow().toFixed(3)}`),
  onError: (err) => {
    process.stderr.write(`route watch failed: ${err.message}\n`);
    process.exit(1);
  },
});
const k = RtNetlink.open();
ifindex ??= (await k.getLinkByName(dev))?.index;
k.close();
process.stdout.write('ready\n');
const stop = () => void sub.stop().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
