/**
 * What the request fuzzer (fuzz.test.ts) asserts about each answer, as a list of violations (empty:
 * the answer is right). The general rules hold for every answer; the semantic ones only where the
 * request's route is known (its path was not mutated and its parameters route normally).
 */
import { isDeepStrictEqual } from "node:util";
import { ERRORS, isErrorCode } from "./error-table.js";
import { type Exchange, type HttpResponse, headerOf } from "./fuzz-http.js";
import { ADDRESS, BODY_FIELDS, type FuzzRequest, INTEGER_PARAMS, INTEGER_QUERY, type ParamKind, type QueryParam, type Rendered, routeByName } from "./fuzz-requests.js";

export interface Violation {
  /** The class of the failure (violations group by it): no ids, sizes or other particulars. */
  kind: string;
  detail: string;
}

/** 200, and every status of the error table. */
export const ALLOWED_STATUSES = new Set<number>([200, ...Object.values(ERRORS).map((e) => e.status)]);

/** Codes that refuse a request for what it is (not for the state it meets). */
export const INPUT_REFUSALS = new Set<string>(["bad_request", "invalid_json", "unsafe_number", "forbidden_key", "limit_exceeded", "unknown_parameter", "bad_cursor",
  "invalid_settings", "bad_split", "payload_too_large", "uri_too_long", "unsupported_media_type", "headers_too_large", "route_not_found", "method_not_allowed",
  "expectation_failed", "invalid_string"]);
const INPUT_REFUSAL_STATUSES = new Set([400, 404, 405, 413, 414, 415, 417, 431]);

export const RECORD_PATH = /^\/v1\/collections\/[^/]+\/records\/([^/]+)$/;

export interface Envelope { code: string; message: string; [k: string]: unknown }

export function preview(b: Buffer | string, n = 200): string {
  const s = typeof b === "string" ? b : b.toString("latin1");
  return JSON.stringify(s.length > n ? `${s.slice(0, n)}…` : s) + (s.length > n ? ` (${s.length} bytes)` : "");
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The JSON a body holds, or undefined when it is not UTF-8 JSON. */
export function jsonOf(body: Buffer): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(utf8.decode(body)) as unknown };
  } catch {
    return undefined;
  }
}

/** The error envelope of a response, if it has one. */
export function envelopeOf(r: HttpResponse): Envelope | undefined {
  const parsed = jsonOf(r.body)?.value as { error?: Envelope } | undefined;
  return typeof parsed?.error === "object" && parsed.error !== null ? parsed.error : undefined;
}

/** A short name of the framing, for failure classes. */
function framingLabel(req: FuzzRequest): string {
  const f = req.framing;
  if (f.kind === "length") return "";
  const variant = "variant" in f ? `:${f.variant}` : f.kind === "version" ? `:${f.version}` : "";
  return ` [${f.kind}${variant}]`;
}

function tryDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/**
 * Whether the request reaches its route's handler path as generated: no path mutation, and every
 * parameter one path segment that the router takes (non-empty, decodable, within its 1024 limit).
 */
export function routable(req: FuzzRequest): boolean {
  if (req.pathMutation !== null) return false;
  return Object.values(req.params).every((raw) => raw !== "" && raw.length <= 1024 && /^[\x21-\x7e]+$/.test(raw) && !/[/?#]/.test(raw) && tryDecode(raw) !== undefined);
}

/** The query's parameter names and values, decoded, or undefined when a part does not decode. */
export function queryPairs(query: string | null): [string, string][] | undefined {
  if (query === null || query === "") return [];
  if (query.includes("#")) return undefined;
  const pairs: [string, string][] = [];
  for (const part of query.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const k = tryDecode((eq === -1 ? part : part.slice(0, eq)).replace(/\+/g, " "));
    const v = tryDecode((eq === -1 ? "" : part.slice(eq + 1)).replace(/\+/g, " "));
    if (k === undefined || v === undefined) return undefined;
    pairs.push([k, v]);
  }
  return pairs;
}

/** A number a schema coerces silently into another (not finite, or an integer past 2^53-1). */
function silentlyChanged(v: string): boolean {
  const n = Number(v.trim());
  return v.trim() !== "" && (n === Infinity || n === -Infinity || (Number.isInteger(n) && !Number.isSafeInteger(n)));
}

/** Whether an answer refuses the request for what it is. */
function isInputRefusal(r: HttpResponse, isHead: boolean): boolean {
  if (isHead) return INPUT_REFUSAL_STATUSES.has(r.status);
  const code = envelopeOf(r)?.code;
  return code !== undefined && INPUT_REFUSALS.has(code);
}

const answerOf = (r: HttpResponse, isHead: boolean) => `${r.status}${isHead ? "" : ` ${preview(r.body, 160)}`}`;

export interface JudgeContext {
  bodyLimit: number;
  /** The records written before the fuzzing: id -> {payload, version}. */
  fixed: Map<string, { payload: unknown; version: number }>;
}

/** Every rule about one exchange that needs no further request. */
export function judge(req: FuzzRequest, r: Rendered, ex: Exchange, ctx: JudgeContext): Violation[] {
  const out: Violation[] = [];
  const add = (kind: string, detail: string) => out.push({ kind, detail });
  const e = r.expect;
  const fl = framingLabel(req);
  if (ex.malformed !== null) add(`the answer is not a well-formed HTTP response${fl}`, `${ex.malformed}; received ${preview(ex.rest)}`);
  const finals = ex.responses;
  if (finals.length === 0) {
    if (ex.end === "deadline") add("no answer before the deadline (the server hangs)", `nothing complete after ${ex.ms} ms; received ${preview(ex.rest)}`);
    else if (!(e.silentClose && ex.end === "closed")) {
      add(`the connection ${ex.end === "error" ? "failed" : "closed"} without an answer`, `${ex.socketError ?? "closed"} after ${ex.ms} ms; received ${preview(ex.rest)}`);
    }
    return out;
  }
  const sentContinue = req.headers.some(([n, v]) => n.toLowerCase() === "expect" && v.toLowerCase() === "100-continue");
  for (const i of ex.interim) if (i.status !== 100 || !sentContinue) add(`an interim ${i.status} response${sentContinue ? "" : " without Expect: 100-continue"}`, `${i.status} ${i.reason}`);
  const first = finals[0]!;
  if (e.statuses !== null && !e.statuses.includes(first.status)) {
    add(`a malformed request${fl} not answered ${e.statuses.join(" or ")}`, `${e.defects.join("; ")}: got ${answerOf(first, r.isHead)}`);
  }
  if (e.no200 && first.status === 200) add(`a 200 to a request whose body never arrived intact${fl}`, `${e.defects.join("; ")}: got ${answerOf(first, r.isHead)}`);
  if (finals.length > 1) {
    if (!e.extra400) add(`more than one response to one request${fl}`, finals.map((f) => f.status).join(", "));
    else for (const extra of finals.slice(1)) if (extra.status !== 400) add(`a response other than 400 to leftover bytes${fl}`, `${extra.status}`);
  }
  for (const resp of finals) out.push(...judgeResponse(req, r, resp, ctx));
  if (ex.rest.length > 0 && ex.malformed === null) {
    add(r.isHead ? "bytes after a response to HEAD (a body?)" : `bytes after the last response${fl}`, preview(ex.rest));
  }
  if (e.mustClose && (ex.end === "done" || ex.end === "deadline") && !ex.stream) {
    add(`the connection stayed open after the answer${e.defects.length > 0 ? " to a malformed request" : " although the request said Connection: close"}${fl}`, `answer ${first.status}`);
  }
  out.push(...semantic(req, r, first, ctx));
  return out;
}

const STATIC_FILE_STATUSES = new Set([206, 302, 304, 416]);

/** The general rules, for every response. */
export function judgeResponse(req: FuzzRequest, r: Rendered, resp: HttpResponse, ctx: JudgeContext): Violation[] {
  const out: Violation[] = [];
  const add = (kind: string, detail: string) => out.push({ kind, detail });
  const s = resp.status;
  // The documentation's static files are served as a browser expects (redirect to the index, ranges,
  // conditional requests): successes of HTTP, not refusals, so the error table does not list them.
  const staticFile = (req.route === "docs" || req.route === "docs-static") && STATIC_FILE_STATUSES.has(s);
  if (staticFile) return out;
  if (!ALLOWED_STATUSES.has(s)) {
    add(`status ${s}: neither 200 nor a status of the error table`, `${s} ${resp.reason}, Content-Type ${JSON.stringify(headerOf(resp, "content-type") ?? null)}, body ${preview(resp.body)}`);
    return out;
  }
  if (s === 405) {
    const allow = headerOf(resp, "allow");
    if (allow === undefined || allow.trim() === "") add("a 405 without an Allow header", preview(resp.body));
    else if (allow.split(",").map((m) => m.trim()).includes(req.method)) add("a 405 whose Allow header lists the method refused", `${req.method} refused; Allow: ${allow}`);
  }
  if (s >= 400 && !r.isHead) {
    const ct = headerOf(resp, "content-type") ?? "";
    const parsed = jsonOf(resp.body);
    if (parsed === undefined) add(`a ${s} whose body is not JSON`, `Content-Type ${JSON.stringify(ct)}, body ${preview(resp.body)}`);
    else {
      if (!/^application\/json\s*(;|$)/i.test(ct)) add(`a ${s} with Content-Type other than application/json`, JSON.stringify(ct));
      const error = (parsed.value as { error?: unknown } | null)?.error as Record<string, unknown> | undefined;
      if (typeof error !== "object" || error === null || Array.isArray(error)) add(`a ${s} without the error envelope {"error": {…}}`, preview(resp.body));
      else {
        const code = error.code;
        if (typeof code !== "string" || !isErrorCode(code)) add(`a ${s} whose error code is not in the error table`, `code ${JSON.stringify(code)}: ${preview(resp.body)}`);
        else {
          const entry: { status: number; retryAfterS?: number } = ERRORS[code];
          if (entry.status !== s) add(`code ${code} answered with status ${s} (the table says ${entry.status})`, preview(resp.body));
          if (entry.retryAfterS !== undefined && headerOf(resp, "retry-after") === undefined) add(`code ${code} without a Retry-After header`, preview(resp.body));
          if (code === "internal" && (typeof error.requestId !== "string" || error.requestId === "")) add("a 500 internal without a requestId", preview(resp.body));
        }
        if (typeof error.message !== "string" || error.message === "") add(`a ${s} without a message`, preview(resp.body));
      }
    }
  }
  // The error table calls it a bug.
  if (s === 500) add("500 internal (a bug, by the error table's own definition)", r.isHead ? "(HEAD: no body)" : preview(resp.body, 300));
  // A record read answers {id, payload, version}; a record written before the fuzzing reads back as written.
  const path = r.target.split(/[?#]/, 1)[0]!;
  const m = RECORD_PATH.exec(path);
  if (s === 200 && req.method === "GET" && m !== null) {
    const rec = jsonOf(resp.body)?.value as { id?: unknown; payload?: unknown; version?: unknown } | undefined;
    if (typeof rec !== "object" || rec === null || typeof rec.id !== "string" || !Object.hasOwn(rec, "payload") || typeof rec.version !== "number" || !Number.isInteger(rec.version) || rec.version < 1) {
      add("a 200 to a record read without {id, payload, version}", preview(resp.body));
    } else {
      const fixed = ctx.fixed.get(rec.id);
      const id = tryDecode(m[1]!);
      if (id !== undefined && id !== rec.id && routable(req)) add("a record read answered another id", `asked ${JSON.stringify(id)}, got ${JSON.stringify(rec.id)}`);
      if (fixed !== undefined && (!isDeepStrictEqual(rec.payload, fixed.payload) || rec.version !== fixed.version)) {
        add("a record written before the fuzzing read back changed", `${rec.id}: ${preview(JSON.stringify(rec))}`);
      }
    }
  }
  return out;
}

/** The semantic rules that need only this answer (the ones that need another request are in fuzz.test.ts). */
function semantic(req: FuzzRequest, r: Rendered, first: HttpResponse, ctx: JudgeContext): Violation[] {
  const out: Violation[] = [];
  const add = (kind: string, detail: string) => out.push({ kind, detail });
  const route = routeByName.get(req.route)!;
  // (An answer outside the table is reported already.)
  if (!routable(req) || r.expect.defects.length > 0 || !route.methods.includes(req.method) || !ALLOWED_STATUSES.has(first.status)) return out;
  const answer = answerOf(first, r.isHead);
  const jsonType = req.contentType === "application/json" || req.contentType === "application/json; charset=utf-8";
  const bodyKind = route.bodies?.[req.method];
  // A body over the limit, to a route that takes one, is refused with 413 payload_too_large.
  if (bodyKind !== undefined && jsonType && r.logicalBody.length > ctx.bodyLimit) {
    // An Expect the server cannot meet is answered (417) before any body is read.
    const refusedFirst = envelopeOf(first)?.code === "expectation_failed";
    if (!refusedFirst && (first.status !== 413 || envelopeOf(first)?.code !== "payload_too_large")) add("a body over the limit not refused with 413 payload_too_large", `${r.logicalBody.length} bytes (limit ${ctx.bodyLimit}): got ${answer}`);
  }
  // Unknown query parameters are refused, on every route alike.
  const pairs = queryPairs(req.query);
  const takes = new Set<string>(route.query?.[req.method] ?? []);
  if (pairs !== undefined) {
    const unknown = pairs.map(([k]) => k).filter((k) => !takes.has(k));
    if (unknown.length > 0 && first.status === 200) add("an unknown query parameter accepted (200)", `${JSON.stringify(unknown)} on ${req.method} ${route.template}`);
    // Integer parameters whose value would be changed silently (not finite, or past 2^53-1) are refused.
    for (const [k, v] of pairs) {
      if (takes.has(k) && INTEGER_QUERY.has(k as QueryParam) && silentlyChanged(v) && !isInputRefusal(first, r.isHead)) {
        add("an integer query parameter that cannot be exact (not finite, or past 2^53-1) not refused", `${k}=${JSON.stringify(v)}: got ${answer}`);
      }
    }
  }
  for (const [name, raw] of Object.entries(req.params)) {
    const v = tryDecode(raw)!;
    if (INTEGER_PARAMS.has(name as ParamKind) && silentlyChanged(v) && !isInputRefusal(first, r.isHead)) {
      add("an integer path parameter that cannot be exact (not finite, or past 2^53-1) not refused", `${name} ${JSON.stringify(v)}: got ${answer}`);
    }
  }
  // Body fields of the wrong JSON type (or out of their declared form) are refused, not coerced.
  const body = bodyKind !== undefined && jsonType && r.logicalBody.length <= ctx.bodyLimit ? jsonOf(r.logicalBody)?.value : undefined;
  if (bodyKind !== undefined && typeof body === "object" && body !== null && !Array.isArray(body)) {
    for (const [field, type] of Object.entries(BODY_FIELDS[bodyKind])) {
      if (!Object.hasOwn(body, field)) continue;
      const v = (body as Record<string, unknown>)[field];
      const isObject = typeof v === "object" && v !== null && !Array.isArray(v);
      const port = typeof v === "string" ? Number(v.slice(v.lastIndexOf(":") + 1)) : NaN;
      const ok = type === "integer" ? typeof v === "number" && Number.isInteger(v)
        : type === "string" ? typeof v === "string"
          : type === "position" ? (typeof v === "number" && Number.isInteger(v)) || typeof v === "string"
          : type === "address" ? typeof v === "string" && ADDRESS.test(v) && port >= 1 && port <= 65535
            : isObject && (field !== "settings" || Object.values(v).every((x) => typeof x === "number")) && (field !== "labels" || Object.values(v).every((x) => typeof x === "string"));
      if (!ok && !isInputRefusal(first, r.isHead)) {
        add(type === "address" ? "a join address that is not host:port with a port in 1-65535 not refused" : "a body field of the wrong JSON type not refused (coerced?)",
          `${bodyKind} body field ${field} = ${preview(JSON.stringify(v), 80)}: got ${answer}`);
      }
    }
  }
  return out;
}
