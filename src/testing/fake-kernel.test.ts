// The KernelNet contract against the in-memory fake; test/kernel runs the
// same suite against the real kernel, so the fake cannot drift unnoticed.
import { kernelContract } from './kernel-contract.js';
import { FakeKernel } from './fake-kernel.js';

kernelContract('FakeKernel', async () => {
  const k = new FakeKernel();
  const underlay = k.addLink({ name: 'ul0' });
  const other = k.addLink({ name: 'ot0' });
  await k.addAddr(underlay.index, '192.0.2.1/24');
  await k.addAddr(other.index, '198.51.100.1/24');
  return { k, underlay, other, close: async () => undefined };
});
