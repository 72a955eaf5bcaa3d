// Node annotations flannel uses in Kubernetes mode (spec §4.4), and the
// normalisation of --kube-annotation-prefix. Pure.
//
// Prefix rules, as flannel applies them: at most one "/"; with none, "/" is
// appended; a prefix that then ends in neither "/" nor "-" gets a "-"; the
// result must be a lower-case DNS name with at least one dot, "/", optionally followed by a
// [a-z0-9_-]+- path part. So "flannel.alpha.coreos.com" gives
// "flannel.alpha.coreos.com/backend-type" and "flannel.alpha.coreos.com/prefix"
// gives "flannel.alpha.coreos.com/prefix-backend-type".

import { FlannelError } from '../../errors.js';
export class AnnotationPrefixError extends FlannelError {
  static override readonly defaultCode: string = 'ANNOTATION_PREFIX_INVALID';
  override name = 'AnnotationPrefixError';
}

export const DEFAULT_ANNOTATION_PREFIX = 'flannel.alpha.coreos.com';

const PREFIX_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+\/([a-z0-9_-]+-)?$/;

export interface Annotations {
  readonly subnetKubeManaged: string;
  readonly backendType: string;
  readonly backendData: string;
  readonly backendV6Data: string;
  readonly backendPublicIP: string;
  readonly backendPublicIPv6: string;
  readonly backendPublicIPOverwrite: string;
  readonly backendPublicIPv6Overwrite: string;
  readonly nodePublicIP: string;
  readonly nodePublicIPv6: string;
  /** flannel-ts (issue 12): the edge gateway's segments, JSON like the lease's "EdgeNetworks"; real flannel ignores it */
  readonly edgeNetworks: string;
}

export function annotationNames(prefix: string): Annotations {
  const slashes = prefix.split('/').length - 1;
  if (slashes > 1) throw new AnnotationPrefixError(`--kube-annotation-prefix: "${prefix}" has more than one "/"`);
  let p = prefix;
  if (slashes === 0) p += '/';
  if (!p.endsWith('/') && !p.endsWith('-')) p += '-';
  if (!PREFIX_RE.test(p)) {
    throw new AnnotationPrefixError(
      `--kube-annotation-prefix: "${prefix}" is not a valid annotation prefix (a lower-case DNS name such as "flannel.alpha.coreos.com", optionally followed by "/name")`,
    );
  }
  return {
    subnetKubeManaged: `${p}kube-subnet-manager`,
    backendType: `${p}backend-type`,
    backendData: `${p}backend-data`,
    backendV6Data: `${p}backend-v6-data`,
    backendPublicIP: `${p}public-ip`,
    backendPublicIPv6: `${p}public-ipv6`,
    backendPublicIPOverwrite: `${p}public-ip-overwrite`,
    backendPublicIPv6Overwrite: `${p}public-ipv6-overwrite`,
    nodePublicIP: `${p}node-public-ip`,
    nodePublicIPv6: `${p}node-public-ipv6`,
    edgeNetworks: `${p}edge-networks`,
  };
}
