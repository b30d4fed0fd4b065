/**
 * What a client of Shoal is refused with: the error table's entry (api/error-table.ts) carried as a typed
 * error, so that a program can tell, without parsing messages, whether asking again may succeed
 * (`retryable`) and whether a write may have taken effect (`applied`).
 */
import { type Applied, ERRORS, isErrorCode } from "../api/error-table.js";

/** Codes the client itself gives, for outcomes no server answered. */
export const CLIENT_ERRORS = {
  /**
   * No endpoint could be reached (or none answered in time): a write may have been applied. Details:
   * `endpoint` (the last one tried) and `cause` (the socket's error code, `ECONNREFUSED` say).
   */
  unreachable: { retryable: true },
  /** An answer that is not the API's JSON (a proxy's page, say). Details: `body`, the start of what came. */
  bad_answer: { retryable: false },
  /** A call on a client after its close(). */
  client_closed: { retryable: false },
} as const;

export class ShoalError extends Error {
  override readonly name = "ShoalError";

  constructor(
    /** The error table's code (`version_mismatch`, `not_leader`, …), or one of CLIENT_ERRORS. */
    readonly code: string,
    message: string,
    /** The HTTP status (0: no answer). */
    readonly status: number,
    /** Asking again, unchanged, may succeed. */
    readonly retryable: boolean,
    /** "no": nothing was written; "unknown": a write may have been applied (retry it with its idempotency key). */
    readonly applied: Applied,
    /** The answer's other fields (`field`, `currentVersion`, `max`, …). */
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
  }

  /** One of the client's own outcomes (CLIENT_ERRORS); `status` is the HTTP status when there was an answer. */
  static ofClient(code: keyof typeof CLIENT_ERRORS, message: string, applied: Applied, status = 0, details: Record<string, unknown> = {}): ShoalError {
    return new ShoalError(code, message, status, CLIENT_ERRORS[code].retryable, applied, details);
  }

  /**
   * This error as the last of a call's attempts when an earlier attempt of the same write may have been
   * applied: whatever this one says, the call's outcome is unknown then (its retries carried the same key).
   */
  afterAttemptsThatMayHaveApplied(): ShoalError {
    if (this.applied === "unknown") return this;
    return new ShoalError(this.code, `${this.message} (an earlier attempt of this write may have been applied)`, this.status, this.retryable, "unknown", this.details);
  }

  /** The error a server's refusal stands for: its code's entry in the error table. */
  static fromAnswer(status: number, body: unknown, write: boolean): ShoalError {
    const err = (body as { error?: { code?: unknown; message?: unknown } & Record<string, unknown> } | null)?.error;
    if (err === undefined || typeof err.code !== "string") {
      return ShoalError.ofClient("bad_answer", `HTTP ${status} without the API's error body`, write ? "unknown" : "no", status);
    }
    const { code, message, ...details } = err;
    const text = typeof message === "string" ? message : code;
    if (!isErrorCode(code)) return new ShoalError(code, text, status, false, write ? "unknown" : "no", details);
    const entry = ERRORS[code];
    return new ShoalError(code, text, status, entry.retryable, entry.applied, details);
  }
}
