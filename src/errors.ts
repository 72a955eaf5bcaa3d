// One shape for the project's errors: callers branch on `code` (and
// `retryable`), never on message text, and a wrapping error keeps the error
// it wraps as the standard `cause`, so an errno survives any number of layers
// (a backend's reconcile error -> the kernel port's NetlinkError).
//
// Codes are short upper-case strings. Errors from the kernel or a syscall use
// the errno name ("EEXIST", "ENOBUFS"); project errors use a name of their
// own ("CONFIG_MISSING", "STORE_UNAVAILABLE", "HTTP_403").

export interface FlannelErrorOptions {
  /** defaults to the class's `defaultCode` */
  code?: string | undefined;
  /** defaults to false: retrying the same thing will fail the same way */
  retryable?: boolean | undefined;
  cause?: unknown;
}

export class FlannelError extends Error {
  /** the code an error of this class gets when none is given */
  static readonly defaultCode: string = 'FLANNEL_ERROR';
  override name = 'FlannelError';
  readonly code: string;
  readonly retryable: boolean;

  constructor(message: string, options: FlannelErrorOptions = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = options.code ?? (new.target as typeof FlannelError).defaultCode;
    this.retryable = options.retryable ?? false;
  }
}

/** `e` and the errors it wraps (through `cause`), outermost first; stops at a cycle. */
export function* causeChain(e: unknown): Generator<unknown> {
  const seen = new Set<unknown>();
  for (let cur = e; cur !== undefined && cur !== null && !seen.has(cur); cur = (cur as { cause?: unknown }).cause) {
    seen.add(cur);
    yield cur;
    if (typeof cur !== 'object') return;
  }
}

/** The first error in `e`'s cause chain that is a `cls`. */
export function findCause<T>(e: unknown, cls: abstract new (...args: never[]) => T): T | undefined {
  for (const c of causeChain(e)) if (c instanceof cls) return c;
  return undefined;
}

/**
 * The innermost code in `e`'s cause chain: a wrapper's own code is general
 * ("RECONCILE"), what it wraps says what went wrong ("EEXIST"). Node's system
 * errors count too (their `code` is the errno name).
 */
export function rootCode(e: unknown): string | undefined {
  let code: string | undefined;
  for (const c of causeChain(e)) {
    const k = (c as { code?: unknown }).code;
    if (typeof k === 'string') code = k;
  }
  return code;
}

/** Whether `e` or anything it wraps has `code`. */
export function hasCode(e: unknown, code: string): boolean {
  for (const c of causeChain(e)) if ((c as { code?: unknown }).code === code) return true;
  return false;
}

/** A FlannelError's `retryable`; false for anything else. */
export function isRetryable(e: unknown): boolean {
  return e instanceof FlannelError && e.retryable;
}
