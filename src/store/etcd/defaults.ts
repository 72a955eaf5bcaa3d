// flannel's etcd defaults (spec §1.1), in a module of their own so the flag
// parsers can show them without loading the etcd client (which costs about
// 200 ms and 30 MB at start-up).
export const DEFAULT_ETCD_ENDPOINTS = 'http://127.0.0.1:4001,http://127.0.0.1:2379';
export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';
