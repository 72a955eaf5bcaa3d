// alloc: takes a lease and publishes it, with no data path (spec App. B).
// Its lease has no BackendType, as flannel's alloc writes it.
import type { Backend, BackendContext, PublishedAttrs } from '../backend.js';

export class AllocBackend implements Backend {
  readonly type = 'alloc';
  constructor(private readonly ctx: BackendContext) {}
  async prepare(): Promise<PublishedAttrs> {
    return { backendType: '' };
  }
  async activate(): Promise<{ mtu: number }> {
    return { mtu: this.ctx.extIface.mtu };
  }
  async reconcile(): Promise<Error[]> {
    return [];
  }
  async close(): Promise<void> {}
}
