/**
 * Response schemas for the OpenAPI document: each route names its success answer and, from the error
 * table, the codes it can refuse with, grouped by status. Fastify also serializes answers with these
 * schemas, so they must describe every field a route returns (open objects where a route's answer is
 * a free-form view).
 */
import { ERRORS, type ErrorCode } from "./error-table.js";

/** Codes any route can answer with. */
const ANY_ROUTE: ErrorCode[] = ["unknown_parameter", "shutting_down", "internal"];
/** Codes of a request with a JSON body (checked before any route sees it). */
export const JSON_BODY: ErrorCode[] = ["invalid_json", "invalid_string", "unsafe_number", "forbidden_key", "limit_exceeded", "payload_too_large", "unsupported_media_type"];
/** Codes a request that goes through a Raft group can answer with. */
export const THROUGH_RAFT: ErrorCode[] = ["no_leader", "no_quorum", "leader_unreachable", "overloaded", "timeout"];
/** And a write, whose outcome can be unknown. */
export const WRITE: ErrorCode[] = [...THROUGH_RAFT, "quorum_lost", "interrupted", "shard_split"];

export const errorEnvelope = {
  type: "object", required: ["error"],
  properties: {
    error: {
      type: "object", required: ["code", "message"], additionalProperties: true,
      properties: {
        code: { type: "string", enum: Object.keys(ERRORS) }, message: { type: "string" },
        currentVersion: { type: "integer" }, leader: { type: "integer" }, requestId: { type: "string" },
      },
    },
  },
} as const;

/** A free-form JSON object (a view whose fields the README describes). */
export const openObject = { type: "object", additionalProperties: true } as const;

/**
 * `{200: ok, 400: envelope, 409: envelope, …}`: the success answer plus the envelope at the status of
 * every code the route may answer with, each status described by its codes.
 */
export function responses(ok: Record<string, unknown> & { description: string }, ...codes: ErrorCode[]): Record<string, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set([...codes, ...ANY_ROUTE])) {
    const status = ERRORS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, unknown> = { 200: ok };
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[status] = { ...errorEnvelope, description: list.map((c) => `\`${c}\`: ${ERRORS[c].meaning} (applied: ${ERRORS[c].applied})`).join("; ") };
  }
  return out;
}
