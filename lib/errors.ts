// One error class for the whole library. Every error carries a stable `code` that callers and tests
// match on; the message starts with that code so a log line alone says what went wrong.

export class PatchswarmError extends Error {
  readonly code: string
  /** The message without the code in front. */
  readonly detail: string

  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options)
    this.name = 'PatchswarmError'
    this.code = code
    this.detail = message
  }

  // Input and encoding
  static BAD_ARGUMENT (msg: string, cause?: unknown) { return new PatchswarmError('BAD_ARGUMENT', msg, { cause }) }
  static BAD_ENCODING (msg: string, cause?: unknown) { return new PatchswarmError('BAD_ENCODING', msg, { cause }) }
  static NOT_CANONICAL (msg: string) { return new PatchswarmError('NOT_CANONICAL', msg) }
  static UNSAFE_PATH (msg: string) { return new PatchswarmError('UNSAFE_PATH', msg) }

  // Keys
  static BAD_KEY_FILE (msg: string, cause?: unknown) { return new PatchswarmError('BAD_KEY_FILE', msg, { cause }) }
  static INSECURE_KEY_FILE (msg: string) { return new PatchswarmError('INSECURE_KEY_FILE', msg) }

  // Signed documents
  static BAD_ENVELOPE (msg: string, cause?: unknown) { return new PatchswarmError('BAD_ENVELOPE', msg, { cause }) }
  static BAD_DOCUMENT (msg: string, cause?: unknown) { return new PatchswarmError('BAD_DOCUMENT', msg, { cause }) }
  static THRESHOLD_NOT_MET (msg: string) { return new PatchswarmError('THRESHOLD_NOT_MET', msg) }
  static BAD_ROOT_VERSION (msg: string) { return new PatchswarmError('BAD_ROOT_VERSION', msg) }
  static VERSION_ROLLBACK (msg: string) { return new PatchswarmError('VERSION_ROLLBACK', msg) }
  static EXPIRED (msg: string) { return new PatchswarmError('EXPIRED', msg) }
  static WRONG_PLATFORM (msg: string) { return new PatchswarmError('WRONG_PLATFORM', msg) }
  static UNRELEASED (msg: string) { return new PatchswarmError('UNRELEASED', msg) }
  static OUTSIDE_DELEGATION (msg: string) { return new PatchswarmError('OUTSIDE_DELEGATION', msg) }
  static WRONG_ORGANISATION (msg: string) { return new PatchswarmError('WRONG_ORGANISATION', msg) }
  static WRONG_HOLDER (msg: string) { return new PatchswarmError('WRONG_HOLDER', msg) }

  // Content
  static BAD_MANIFEST (msg: string, cause?: unknown) { return new PatchswarmError('BAD_MANIFEST', msg, { cause }) }
  static HASH_MISMATCH (msg: string) { return new PatchswarmError('HASH_MISMATCH', msg) }
  static PACKAGE_INCOMPLETE (msg: string) { return new PatchswarmError('PACKAGE_INCOMPLETE', msg) }

  // Resources
  static NOT_FOUND (msg: string, cause?: unknown) { return new PatchswarmError('NOT_FOUND', msg, { cause }) }
  static ALREADY_EXISTS (msg: string) { return new PatchswarmError('ALREADY_EXISTS', msg) }
  static IN_USE (msg: string, cause?: unknown) { return new PatchswarmError('IN_USE', msg, { cause }) }
  static IO_ERROR (msg: string, cause?: unknown) { return new PatchswarmError('IO_ERROR', msg, { cause }) }
  static CLOSED (msg: string) { return new PatchswarmError('CLOSED', msg) }
  static FORBIDDEN (msg: string) { return new PatchswarmError('FORBIDDEN', msg) }
  static BANNED (msg: string) { return new PatchswarmError('BANNED', msg) }

  // Swarm
  static PROTOCOL_ERROR (msg: string, cause?: unknown) { return new PatchswarmError('PROTOCOL_ERROR', msg, { cause }) }
  static MESSAGE_TOO_LARGE (msg: string) { return new PatchswarmError('MESSAGE_TOO_LARGE', msg) }
  static UNSOLICITED (msg: string) { return new PatchswarmError('UNSOLICITED', msg) }
  static FLOOD (msg: string) { return new PatchswarmError('FLOOD', msg) }
  static HANDSHAKE_FAILED (msg: string, cause?: unknown) { return new PatchswarmError('HANDSHAKE_FAILED', msg, { cause }) }

  // Fleet, enrollment and policy
  static BAD_TOKEN (msg: string, cause?: unknown) { return new PatchswarmError('BAD_TOKEN', msg, { cause }) }
  static TOKEN_EXPIRED (msg: string) { return new PatchswarmError('TOKEN_EXPIRED', msg) }
  static TOKEN_REVOKED (msg: string) { return new PatchswarmError('TOKEN_REVOKED', msg) }
  static TOKEN_USED_UP (msg: string) { return new PatchswarmError('TOKEN_USED_UP', msg) }
  static NOT_APPROVED (msg: string) { return new PatchswarmError('NOT_APPROVED', msg) }
  static BAD_POLICY (msg: string, cause?: unknown) { return new PatchswarmError('BAD_POLICY', msg, { cause }) }
  static BAD_WINDOW (msg: string, cause?: unknown) { return new PatchswarmError('BAD_WINDOW', msg, { cause }) }

  // Rollouts
  static BAD_ROLLOUT (msg: string, cause?: unknown) { return new PatchswarmError('BAD_ROLLOUT', msg, { cause }) }
  static INVALID_TRANSITION (msg: string) { return new PatchswarmError('INVALID_TRANSITION', msg) }

  // Reporting
  static BAD_EVENT (msg: string, cause?: unknown) { return new PatchswarmError('BAD_EVENT', msg, { cause }) }
  static BAD_SIGNATURE (msg: string) { return new PatchswarmError('BAD_SIGNATURE', msg) }
  static UNKNOWN_ENDPOINT (msg: string) { return new PatchswarmError('UNKNOWN_ENDPOINT', msg) }
  static WRONG_TENANT (msg: string) { return new PatchswarmError('WRONG_TENANT', msg) }
  static REPLAY (msg: string) { return new PatchswarmError('REPLAY', msg) }
  static SEQUENCE_GAP (msg: string) { return new PatchswarmError('SEQUENCE_GAP', msg) }
  static BAD_EVIDENCE (msg: string, cause?: unknown) { return new PatchswarmError('BAD_EVIDENCE', msg, { cause }) }
  static BAD_WEBHOOK (msg: string, cause?: unknown) { return new PatchswarmError('BAD_WEBHOOK', msg, { cause }) }

  // Agent
  static BAD_CONFIG (msg: string, cause?: unknown) { return new PatchswarmError('BAD_CONFIG', msg, { cause }) }
  static BAD_STATE (msg: string, cause?: unknown) { return new PatchswarmError('BAD_STATE', msg, { cause }) }
  static INSTALL_FAILED (msg: string, cause?: unknown) { return new PatchswarmError('INSTALL_FAILED', msg, { cause }) }
  static TIMEOUT (msg: string) { return new PatchswarmError('TIMEOUT', msg) }
  static BREAKER_OPEN (msg: string) { return new PatchswarmError('BREAKER_OPEN', msg) }
  static UNAVAILABLE (msg: string, cause?: unknown) { return new PatchswarmError('UNAVAILABLE', msg, { cause }) }
}

export function isPatchswarmError (err: unknown, code?: string): err is PatchswarmError {
  return err instanceof PatchswarmError && (code === undefined || err.code === code)
}
