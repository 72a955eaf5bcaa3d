// CNI error results (CNI spec 1.0 "Error" section). A plugin that fails
// prints {"cniVersion","code","msg","details"} on stdout and exits non-zero.

/** Well-known error codes 1-99 are reserved by the CNI spec. */
export const ErrorCode = {
  /** Incompatible CNI version. */
  IncompatibleVersion: 1,
  /** Unsupported field in network configuration. */
  UnsupportedField: 2,
  /** Container unknown or does not exist. */
  UnknownContainer: 3,
  /** Invalid necessary environment variables, like CNI_COMMAND, CNI_CONTAINERID, etc. */
  InvalidEnvironmentVariables: 4,
  /** I/O failure. */
  IOFailure: 5,
  /** Failed to decode content (e.g. malformed JSON on stdin). */
  DecodingFailure: 6,
  /** Invalid network config. */
  InvalidNetworkConfig: 7,
  /** Try again later (a transient condition, e.g. flanneld has not written subnet.env yet). */
  TryAgainLater: 11,

  // ---- plugin-specific (100+) ----
  /** subnet.env exists but is unusable: a required FLANNEL_* variable is missing or malformed. */
  InvalidSubnetFile: 100,
  /** The delegate plugin named by `type` is not an executable file in any CNI_PATH directory. */
  DelegateNotFound: 101,
  /** The delegate plugin failed without a CNI error JSON, timed out, or printed an unparsable result. */
  DelegateFailed: 102,
} as const;

/** Longest msg / details an error result carries; longer ones are cut with "…". */
export const MAX_MSG = 300;
export const MAX_DETAILS = 1000;

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

export class CniError extends Error {
  override name = 'CniError';
  readonly msg: string;
  readonly details: string;
  constructor(
    readonly code: number,
    msg: string,
    details = '',
  ) {
    // Messages quote stdin values (name, cniVersion, delegate type, paths) and
    // delegate output, any of which can be megabytes (found by fuzzing, issue
    // 9); the runtime logs the result, so keep it to a readable size.
    const m = clip(msg, MAX_MSG);
    const d = clip(details, MAX_DETAILS);
    super(d ? `${m}: ${d}` : m);
    this.msg = m;
    this.details = d;
  }

  /** The error result object; `details` is omitted when empty, as libcni does. */
  toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
    return { cniVersion, code: this.code, msg: this.msg, ...(this.details ? { details: this.details } : {}) };
  }
}

/** Any thrown value as a CniError (unknown errors become a plugin-internal I/O failure). */
export function asCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err === 'object' && typeof err.message === 'string') {
    return new CniError(ErrorCode.IOFailure, err.message, err.code ?? '');
  }
  return new CniError(ErrorCode.IOFailure, String(e));
}
