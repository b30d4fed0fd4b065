/**
 * The request fuzzer's generators (fast-check arbitraries) and how a generated request becomes bytes
 * on the wire. A generated request is a small description (`FuzzRequest`: method, path built from a
 * real route template with mutated parameters, query, headers, a body *spec*, and how the body is
 * framed), so that a counterexample prints in a few lines even when its body is megabytes; `render`
 * makes the bytes and says what the server may answer (`Expectation`).
 *
 * Over 600 lines, knowingly: each framing defect's generator and the expectation `render` derives for
 * it must change together, and reading them side by side is how the expectations are reviewed.
 *
 * Framing-level defects are deliberate and each has a precise expectation (RFC 9112 where it says
 * MUST); see `expectationOf`.
 */
import fc from "fast-check";
import { DEFAULT_PLACEMENT } from "../placement/types.js";

// ---------------------------------------------------------------------------------------------
// Routes

/** Integer-typed path parameters, and which values must never be sent (they would change the cluster for good). */
export type ParamKind = "collection" | "record" | "operator" | "shard" | "shardNotSplit" | "node" | "nodeNotSelf" | "file";
export type BodyKind = "record" | "config" | "rollback" | "split" | "move" | "transfer" | "promote" | "join";

export interface Route {
  name: string;
  /** The path with `{param}` placeholders. */
  template: string;
  /** The methods the route serves (HEAD too for GET routes). */
  methods: string[];
  /** Query parameters taken, by method. */
  query?: Partial<Record<string, QueryParam[]>>;
  /** The body the route takes, by method. */
  bodies?: Partial<Record<string, BodyKind>>;
  weight: number;
}

export type QueryParam = "consistency" | "ifVersion" | "limit" | "cursor" | "status";

export const ROUTES: Route[] = [
  { name: "record", template: "/v1/collections/{collection}/records/{record}", methods: ["GET", "HEAD", "PUT", "DELETE"], query: { GET: ["consistency"], HEAD: ["consistency"], DELETE: ["ifVersion"] }, bodies: { PUT: "record" }, weight: 14 },
  { name: "scan", template: "/v1/collections/{collection}/records", methods: ["GET", "HEAD"], query: { GET: ["limit", "cursor"], HEAD: ["limit", "cursor"] }, weight: 3 },
  { name: "status", template: "/v1/cluster/status", methods: ["GET", "HEAD"], weight: 1 },
  { name: "nodes", template: "/v1/cluster/nodes", methods: ["GET", "HEAD"], weight: 1 },
  { name: "shards", template: "/v1/cluster/shards", methods: ["GET", "HEAD"], weight: 1 },
  { name: "config", template: "/v1/cluster/config", methods: ["GET", "HEAD", "PUT"], bodies: { PUT: "config" }, weight: 2 },
  { name: "config-history", template: "/v1/cluster/config/history", methods: ["GET", "HEAD"], weight: 1 },
  { name: "config-rollback", template: "/v1/cluster/config/rollback", methods: ["POST"], bodies: { POST: "rollback" }, weight: 1 },
  { name: "operators", template: "/v1/cluster/operators", methods: ["GET", "HEAD"], query: { GET: ["status"], HEAD: ["status"] }, weight: 1 },
  { name: "operator-cancel", template: "/v1/cluster/operators/{operator}/cancel", methods: ["POST"], weight: 1 },
  { name: "alerts", template: "/v1/cluster/alerts", methods: ["GET", "HEAD"], weight: 1 },
  { name: "shard-split", template: "/v1/cluster/shards/{shardNotSplit}/split", methods: ["POST"], bodies: { POST: "split" }, weight: 1 },
  { name: "shard-merge", template: "/v1/cluster/shards/{shardNotSplit}/merge", methods: ["POST"], weight: 1 },
  { name: "shard-move", template: "/v1/cluster/shards/{shard}/move", methods: ["POST"], bodies: { POST: "move" }, weight: 1 },
  { name: "shard-transfer-leader", template: "/v1/cluster/shards/{shard}/transfer-leader", methods: ["POST"], bodies: { POST: "transfer" }, weight: 1 },
  { name: "node-drain", template: "/v1/cluster/nodes/{nodeNotSelf}/drain", methods: ["POST"], weight: 1 },
  { name: "node-remove", template: "/v1/cluster/nodes/{nodeNotSelf}/remove", methods: ["POST"], weight: 1 },
  { name: "node-promote", template: "/v1/cluster/nodes/{node}/promote", methods: ["POST"], bodies: { POST: "promote" }, weight: 1 },
  { name: "join", template: "/v1/cluster/join", methods: ["POST"], bodies: { POST: "join" }, weight: 2 },
  { name: "watch", template: "/v1/cluster/watch", methods: ["GET", "HEAD"], weight: 0.5 },
  { name: "healthz", template: "/healthz", methods: ["GET", "HEAD"], weight: 1 },
  { name: "readyz", template: "/readyz", methods: ["GET", "HEAD"], weight: 1 },
  { name: "metrics", template: "/metrics", methods: ["GET", "HEAD"], weight: 0.5 },
  { name: "openapi", template: "/v1/openapi.json", methods: ["GET", "HEAD"], weight: 0.5 },
  { name: "docs", template: "/docs", methods: ["GET", "HEAD"], weight: 0.5 },
  { name: "docs-static", template: "/docs/static/{file}", methods: ["GET", "HEAD"], weight: 0.5 },
];

export const routeByName = new Map(ROUTES.map((r) => [r.name, r]));

/** Types of the body fields a route's schema declares (checked by the fuzzer's oracles). */
/** A body field's declared JSON type ("position": a hash, an integer, or an id, a string). */
export const BODY_FIELDS: Record<BodyKind, Record<string, "integer" | "string" | "position" | "object" | "address">> = {
  record: { ifVersion: "integer" },
  config: { baseVersion: "integer", note: "string", settings: "object" },
  rollback: { toVersion: "integer" },
  split: { at: "position" },
  move: { from: "integer", to: "integer" },
  transfer: { to: "integer" },
  promote: { with: "integer" },
  join: { peer: "address", http: "address", labels: "object", role: "string" },
};

/** Integer-typed path parameters (the routes' `idParams`). */
export const INTEGER_PARAMS = new Set<ParamKind>(["operator", "shard", "shardNotSplit", "node", "nodeNotSelf"]);
export const INTEGER_QUERY = new Set<QueryParam>(["ifVersion", "limit"]);


// ---------------------------------------------------------------------------------------------
// The request model

export type BodySpec =
  | { kind: "none" }
  /** JSON.stringify(value) */
  | { kind: "json"; value: unknown }
  /** Text sent as UTF-8 (escapes such as \ud800 stay escapes: the text is what the JSON says). */
  | { kind: "text"; text: string }
  /** `pre`, raw bytes (not UTF-8), `post` */
  | { kind: "bytes"; pre: string; bytes: number[]; post: string }
  /** head + open×count + middle + close×count + tail: deep nesting, long runs */
  | { kind: "repeat"; head: string; open: string; count: number; middle: string; close: string; tail: string }
  /** {"payload": {k0: 0, k1: 0, …}}: `count` distinct keys of `keyLength` characters */
  | { kind: "keys"; count: number; keyLength: number }
  /** JSON text in UTF-16LE (with or without a byte order mark) */
  | { kind: "utf16"; text: string; bom: boolean };

export type Framing =
  /** Content-Length when there is a body (or the method usually has one). */
  | { kind: "length" }
  | { kind: "chunked"; chunk: number }
  /** An invalid Content-Length value. */
  | { kind: "cl-bad"; value: string }
  /** Two Content-Length fields, the second `delta` off the first (0: equal). */
  | { kind: "cl-dup"; delta: number }
  /** Transfer-Encoding: chunked and Content-Length together. */
  | { kind: "te-cl" }
  /** A Transfer-Encoding other than a final chunked. */
  | { kind: "te-bad"; value: string }
  /** Chunked, with a broken chunk. */
  | { kind: "chunk-bad"; variant: "size-not-hex" | "size-overflow" | "size-negative" | "data-longer" | "no-crlf" | "ext-ctl" }
  /** Content-Length `missing` bytes more than sent, then the client half-closes. */
  | { kind: "truncated"; missing: number }
  /** Content-Length `extra` bytes less than sent (the rest reads as a next request). */
  | { kind: "excess"; extra: number }
  /** A body with neither Content-Length nor Transfer-Encoding (it reads as a next request). */
  | { kind: "unframed" }
  | { kind: "host"; variant: "missing" | "double" | "invalid"; value: string }
  | { kind: "version"; version: string }
  | { kind: "bare-lf" }
  | { kind: "header-syntax"; variant: "space-before-colon" | "obs-fold" | "nul-in-value" | "ctl-in-value" | "bad-name" | "empty-name" | "no-colon" | "leading-whitespace" }
  /** No Connection: close (the connection stays open). */
  | { kind: "keep-alive" }
  | { kind: "upgrade"; protocol: string };

export interface FuzzRequest {
  route: string;
  method: string;
  /** The route's parameters as written in the path (raw: percent-encoding, or raw bytes as latin1 characters). */
  params: Record<string, string>;
  /** A structural change of the path (then the route it reaches is not known). */
  pathMutation: string | null;
  /** The raw query after "?", or null for none. */
  query: string | null;
  /** Extra header fields (latin1). */
  headers: [string, string][];
  /** Many small header fields, or one huge one. */
  bulk: { kind: "many"; count: number } | { kind: "huge"; size: number } | null;
  contentType: string | null;
  body: BodySpec;
  framing: Framing;
}

export interface Expectation {
  /** The deliberate framing-level defects, or [] for a well-formed request. */
  defects: string[];
  /** The statuses the answer must have (null: any the general rules allow). */
  statuses: number[] | null;
  /** Closing the connection without any response is acceptable (the request never completed). */
  silentClose: boolean;
  /** More responses than one are acceptable if they are all 400 (leftover bytes parsed as a next request). */
  extra400: boolean;
  /** A 200 is wrong: the route reads a body that never arrived intact. */
  no200: boolean;
  /** The server must close the connection after answering (Connection: close was sent, or a framing defect must be refused). */
  mustClose: boolean;
}

export interface Rendered {
  head: Buffer;
  body: Buffer;
  halfClose: boolean;
  isHead: boolean;
  /** The request-target as written. */
  target: string;
  /** The body as the server should read it (before chunking). */
  logicalBody: Buffer;
  expect: Expectation;
}

export interface RenderContext {
  port: number;
  /** The node's own addresses, for join bodies (`{OWN_PEER}`, `{OWN_HTTP}` in generated strings). */
  ownPeer: string;
  ownHttp: string;
}

// ---------------------------------------------------------------------------------------------
// Rendering

/** Node's default limit on a request head (--max-http-header-size). */
const HEAD_LIMIT = 16 * 1024;
/** Margin around HEAD_LIMIT in which either outcome is accepted (lines the fuzzer writes raw are not counted, for one). */
const HEAD_MARGIN = 1024;

export function targetOf(req: FuzzRequest): string {
  const route = routeByName.get(req.route)!;
  let path = route.template.replace(/\{(\w+)\}/g, (_, name: string) => req.params[name] ?? "");
  if (req.pathMutation !== null) path = mutatePath(path, req.pathMutation);
  return req.query === null ? path : `${path}?${req.query}`;
}

function mutatePath(path: string, mutation: string): string {
  switch (mutation) {
    case "trailing-slash": return `${path}/`;
    case "double-slash": return path.replace("/", "//");
    case "dot-segment": return path.replace(/^\/([^/]+)/, "/$1/./x/..");
    case "upper-case": return path.toUpperCase();
    case "encoded-letter": return path.replace(/[a-z]/, (c) => `%${c.charCodeAt(0).toString(16)}`);
    case "absolute-form": return `http://127.0.0.1${path}`;
    case "asterisk": return "*";
    case "no-leading-slash": return path.slice(1);
    case "matrix": return `${path};x=1`;
    case "fragment": return `${path}#frag`;
    case "backslash": return path.replace(/\/(?=[^/]*$)/, "\\");
    case "prefix": return `/v2${path}`;
    case "empty": return "";
    default: throw new Error(`unknown path mutation ${mutation}`);
  }
}

export function renderBody(spec: BodySpec): Buffer {
  switch (spec.kind) {
    case "none": return Buffer.alloc(0);
    case "json": return Buffer.from(JSON.stringify(spec.value) ?? "", "utf8");
    case "text": return Buffer.from(spec.text, "utf8");
    case "bytes": return Buffer.concat([Buffer.from(spec.pre, "utf8"), Buffer.from(spec.bytes), Buffer.from(spec.post, "utf8")]);
    case "repeat": return Buffer.from(spec.head + spec.open.repeat(spec.count) + spec.middle + spec.close.repeat(spec.count) + spec.tail, "utf8");
    case "keys": {
      const parts: string[] = [];
      for (let i = 0; i < spec.count; i++) parts.push(`${JSON.stringify(i.toString(36).padStart(spec.keyLength, "k"))}:0`);
      return Buffer.from(`{"payload":{${parts.join(",")}}}`, "utf8");
    }
    case "utf16": return Buffer.concat([spec.bom ? Buffer.from([0xff, 0xfe]) : Buffer.alloc(0), Buffer.from(spec.text, "utf16le")]);
  }
}

function chunked(body: Buffer, size: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; at += size) {
    const piece = body.subarray(at, at + size);
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`, "latin1"), piece, Buffer.from("\r\n", "latin1"));
  }
  parts.push(Buffer.from("0\r\n\r\n", "latin1"));
  return Buffer.concat(parts);
}

function badChunked(body: Buffer, variant: Extract<Framing, { kind: "chunk-bad" }>["variant"]): Buffer {
  const b = (s: string) => Buffer.from(s, "latin1");
  switch (variant) {
    case "size-not-hex": return Buffer.concat([b("zz\r\n"), body, b("\r\n0\r\n\r\n")]);
    case "size-overflow": return Buffer.concat([b("ffffffffffffffffffff\r\n"), body, b("\r\n0\r\n\r\n")]);
    case "size-negative": return Buffer.concat([b("-1\r\n"), body, b("\r\n0\r\n\r\n")]);
    case "data-longer": return Buffer.concat([b("1\r\n"), body.length > 1 ? body : b("xy"), b("\r\n0\r\n\r\n")]);
    case "no-crlf": return Buffer.concat([b(`${body.length.toString(16)}\r\n`), body, b("0\r\n\r\n")]);
    case "ext-ctl": return Buffer.concat([b(`${body.length.toString(16)};a=\x01\r\n`), body, b("\r\n0\r\n\r\n")]);
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Methods that usually carry a body: a Content-Length (0 when empty) is sent with them. */
const BODY_METHODS = new Set(["PUT", "POST", "PATCH"]);

/** Fills the `{OWN_PEER}` / `{OWN_HTTP}` placeholders of join bodies. */
function withAddresses(text: string, ctx: RenderContext): string {
  return text.replaceAll("{OWN_PEER}", ctx.ownPeer).replaceAll("{OWN_HTTP}", ctx.ownHttp);
}

export function render(req: FuzzRequest, ctx: RenderContext): Rendered {
  const target = targetOf(req);
  const logicalBody = Buffer.from(withAddresses(renderBody(req.body).toString("latin1"), ctx), "latin1");
  const f = req.framing;
  const eol = f.kind === "bare-lf" ? "\n" : "\r\n";
  const version = f.kind === "version" ? f.version : "HTTP/1.1";
  const lines: string[] = [version === "" ? `${req.method} ${target}` : `${req.method} ${target} ${version}`];
  // What Node holds to its head limit: the request-target, and each field's name and value (not the
  // method, version, colons or line ends: with 300 fields those are ~1,200 bytes more).
  let limitedBytes = target.length;
  const header = (name: string, value: string) => {
    lines.push(`${name}: ${value}`);
    limitedBytes += name.length + value.length;
  };
  if (f.kind === "header-syntax" && f.variant === "leading-whitespace") lines.push(" X-Fuzz-Leading: 1");
  if (f.kind !== "host") header("Host", `127.0.0.1:${ctx.port}`);
  else if (f.variant === "double") {
    header("Host", `127.0.0.1:${ctx.port}`);
    header("Host", f.value);
  } else if (f.variant === "invalid") header("Host", f.value);
  if (req.contentType !== null) header("Content-Type", req.contentType);
  for (const [n, v] of req.headers) header(n, v);
  if (req.bulk?.kind === "many") for (let i = 0; i < req.bulk.count; i++) header(`X-Fuzz-${i}`, "v");
  if (req.bulk?.kind === "huge") header("X-Fuzz-Huge", "h".repeat(req.bulk.size));
  let body: Buffer = logicalBody;
  let halfClose = false;
  const length = logicalBody.length;
  switch (f.kind) {
    case "chunked":
      header("Transfer-Encoding", "chunked");
      body = chunked(logicalBody, f.chunk);
      break;
    case "cl-bad":
      header("Content-Length", f.value);
      break;
    case "cl-dup":
      header("Content-Length", String(length));
      header("Content-Length", String(Math.max(0, length + f.delta)));
      break;
    case "te-cl":
      header("Transfer-Encoding", "chunked");
      header("Content-Length", String(length));
      body = chunked(logicalBody, 1024);
      break;
    case "te-bad":
      header("Transfer-Encoding", f.value);
      halfClose = true;
      break;
    case "chunk-bad":
      header("Transfer-Encoding", "chunked");
      body = badChunked(logicalBody, f.variant);
      halfClose = true;
      break;
    case "truncated":
      header("Content-Length", String(length + f.missing));
      halfClose = true;
      break;
    case "excess":
      header("Content-Length", String(Math.max(0, length - f.extra)));
      break;
    case "unframed":
      break;
    default:
      if (length > 0 || BODY_METHODS.has(req.method)) header("Content-Length", String(length));
  }
  const sentClose = f.kind !== "keep-alive" && f.kind !== "upgrade" && !(f.kind === "version" && f.version === "HTTP/1.0");
  if (sentClose) header("Connection", "close");
  if (f.kind === "upgrade") {
    header("Connection", "Upgrade");
    header("Upgrade", f.protocol);
  }
  if (f.kind === "header-syntax") {
    const bad: Record<typeof f.variant, string | null> = {
      "space-before-colon": "X-Fuzz : 1", "obs-fold": "X-Fuzz: 1\r\n folded", "nul-in-value": "X-Fuzz: a\0b", "ctl-in-value": "X-Fuzz: a\x01b",
      "bad-name": "X(Fuzz): 1", "empty-name": ": 1", "no-colon": "X-Fuzz", "leading-whitespace": null,
    };
    if (bad[f.variant] !== null) lines.push(bad[f.variant]!);
  }
  const head = Buffer.from(lines.join(eol) + eol + eol, "latin1");

  const expect = expectationOf(req, target, head.length, limitedBytes, length);
  return { head, body, halfClose, isHead: req.method === "HEAD", target, logicalBody, expect };
}

interface Defect {
  why: string;
  /** The statuses the answer must have because of this defect (null: any the general rules allow). */
  statuses: number[] | null;
  /** What refusing this defect looks like (counts when another defect restricts the answer: the server may meet either first). */
  refusals: number[];
  silentClose?: boolean;
  extra400?: boolean;
  /** The body never arrives intact: a route that reads it must not act (200). */
  no200?: boolean;
}

/**
 * What the server may answer to a request, defect by defect: MUST in RFC 9112 / 9110 means one status
 * (400; 431 or 414 for the head limit), MAY means any answer the general rules allow (or that refusal).
 * A defect in the body (truncated, broken chunks) leaves the head valid: the server may answer from
 * the head alone before it reads the body, answer 400 when it does, or close once the client's end
 * arrives without a message to answer; a route that reads the body must not act on it (no 200).
 */
function expectationOf(req: FuzzRequest, target: string, headLength: number, limitedBytes: number, bodyLength: number): Expectation {
  const f = req.framing;
  const defects: Defect[] = [];
  const must = (why: string, statuses: number[], extra: Partial<Defect> = {}) => defects.push({ why, statuses, refusals: statuses, ...extra });
  const may = (why: string, extra: Partial<Defect> = {}) => defects.push({ why, statuses: null, refusals: [400], ...extra });
  const route = routeByName.get(req.route)!;
  const readsBody = req.pathMutation === null && route.bodies?.[req.method] !== undefined;
  const bodyDefect = (why: string) => may(why, { silentClose: true, no200: readsBody });

  // The request line as a lenient recipient reads it: RFC 9112 §3 lets it split on runs of SP / HTAB.
  const version = f.kind === "version" ? f.version : "HTTP/1.1";
  let method = req.method;
  let path = target;
  if (/[ \t]/.test(method + target)) {
    const words = `${method} ${target} ${version}`.split(/[ \t]+/).filter((w) => w !== "");
    if (words.length === (version === "" ? 2 : 3) && TOKEN.test(words[0]!)) {
      may("whitespace in the request line beyond single separators (RFC 9112 §3: may be read as one separator)");
      [method, path] = [words[0]!, words[1]!];
    } else must("whitespace inside the method or the request-target", [400]);
  }
  if (!TOKEN.test(method)) must("the method is not a token", [400]);
  // RFC 9110 §9.1: an unknown method is 501, which the error table has not: 400, 404 or 405.
  else if (!STANDARD_METHODS.includes(method) && !OTHER_METHODS.includes(method)) must("an unknown method", [400, 404, 405]);
  // RFC 9112 §3.2: a request-target is visible ASCII, in origin-form ("/…"), absolute-form or (OPTIONS) "*";
  // otherwise it is invalid: 400 (the table has no 301).
  if (path === "") must("an empty request-target", [400]);
  else if (/[^\x21-\x7e \t]/.test(path)) must("a request-target with control or non-ASCII bytes", [400]);
  // The asterisk-form is "*" alone, for OPTIONS only; anything else starting with it is a target that
  // routes nowhere (RFC 9112 §3.2.4: SHOULD 400, or any refusal).
  else if (path.startsWith("*")) {
    if (path !== "*" || method !== "OPTIONS") may("a misused asterisk-form");
  } else if (!path.startsWith("/") && !/^https?:\/\//i.test(path)) must("a request-target neither origin-form nor absolute-form", [400]);
  if (f.kind === "version") {
    // HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive. A well-formed version other than 1.0 / 1.1 may be
    // processed as 1.1 (RFC 9110 §6.2) or refused (400: the table has no 505). No version: an HTTP/0.9 request line.
    if (f.version === "") may("no HTTP-version (an HTTP/0.9 request line)");
    else if (!/^HTTP\/[0-9]\.[0-9][ \t]*$/.test(f.version)) must(`a malformed HTTP-version ${JSON.stringify(f.version)}`, [400]);
    else if (/[ \t]$/.test(f.version)) may("whitespace after the HTTP-version (RFC 9112 §3: may be ignored)");
    else if (f.version !== "HTTP/1.0" && f.version !== "HTTP/1.1") may(`HTTP-version ${f.version}`);
  }
  // RFC 9112 §3.2: MUST answer 400 to an HTTP/1.1 request without Host, with two Host fields or an invalid one.
  if (f.kind === "host") must(`Host ${f.variant}`, [400]);
  if (f.kind === "bare-lf") may("lines end with a bare LF (RFC 9112 §2.2: may be accepted)");
  // RFC 9112 §5.1: whitespace between a field name and the colon MUST be refused with 400. The others
  // may be refused, or (obs-fold, NUL) repaired (RFC 9112 §5.2, RFC 9110 §5.5).
  if (f.kind === "header-syntax") {
    if (f.variant === "space-before-colon") must("whitespace before a header's colon", [400]);
    else may(`a malformed header line (${f.variant})`);
  }
  if (target.length > HEAD_LIMIT + HEAD_MARGIN) must("a request-target longer than the head limit", [414, 431]);
  else if (limitedBytes > HEAD_LIMIT + HEAD_MARGIN) must(`a request head of ${headLength} bytes (${limitedBytes} held to the limit)`, [431]);
  else if (limitedBytes > HEAD_LIMIT - HEAD_MARGIN) may(`a request head of ${headLength} bytes (${limitedBytes} held to the limit: near it)`, { refusals: [431] });
  // RFC 9112 §6.3: an invalid Content-Length, or differing ones, is unrecoverable: 400 and close. Equal ones may be read as one.
  if (f.kind === "cl-bad") must(`Content-Length ${JSON.stringify(f.value)}`, [400]);
  if (f.kind === "cl-dup") {
    if (Math.max(0, bodyLength + f.delta) === bodyLength) may("two equal Content-Length fields");
    else must("two different Content-Length fields", [400]);
  }
  // Both: refused (400), or read as chunked and the connection closed.
  if (f.kind === "te-cl") may("Transfer-Encoding and Content-Length");
  if (f.kind === "te-bad") {
    // RFC 9112 §6.1: chunked not the final coding: MUST 400 and close. Chunked final (after another coding, or twice):
    // the head frames the body as chunked, and the body (not chunked) is broken.
    const last = f.value.split(",").pop()!.trim().toLowerCase();
    if (last.startsWith("chunked")) bodyDefect(`Transfer-Encoding ${JSON.stringify(f.value)} over a body that is not chunked`);
    else must(`Transfer-Encoding ${JSON.stringify(f.value)} (chunked not final)`, [400]);
  }
  if (f.kind === "chunk-bad") bodyDefect(`a broken chunked body (${f.variant})`);
  if (f.kind === "truncated") bodyDefect(`the body ends ${f.missing} bytes short of its Content-Length`);
  if (f.kind === "excess" && f.extra > 0 && bodyLength > 0) may("bytes past the Content-Length", { extra400: true });
  if (f.kind === "unframed" && bodyLength > 0) may("a body without Content-Length or Transfer-Encoding", { extra400: true });
  const restricted = defects.filter((d) => d.statuses !== null);
  const allowed = restricted.length === 0 ? null : new Set([...restricted.flatMap((d) => d.statuses!), ...defects.filter((d) => d.statuses === null).flatMap((d) => d.refusals)]);
  const sentClose = f.kind !== "keep-alive" && f.kind !== "upgrade" && !(f.kind === "version" && f.version === "HTTP/1.0");
  return {
    defects: defects.map((d) => d.why),
    statuses: allowed === null ? null : [...allowed].sort(),
    silentClose: defects.some((d) => d.silentClose === true),
    extra400: defects.some((d) => d.extra400 === true),
    no200: defects.some((d) => d.no200 === true),
    // A request the server must refuse for its framing leaves the connection unusable; one it may serve does not.
    mustClose: sentClose || restricted.length > 0,
  };
}

/** A few lines that say what the request is (fast-check prints counterexamples with it). */
export function describe(req: FuzzRequest): string {
  const cut = (s: string, n = 160) => (s.length > n ? `${s.slice(0, n)}...(${s.length} chars)` : s)
    .replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  const body = ((b: BodySpec): string => {
    switch (b.kind) {
      case "none": return "none";
      case "json": return `json ${cut(JSON.stringify(b.value) ?? "undefined")}`;
      case "text": return `text ${cut(JSON.stringify(b.text))}`;
      case "bytes": return `bytes ${cut(JSON.stringify(b.pre))} + [${b.bytes.map((x) => x.toString(16).padStart(2, "0")).join(" ")}] + ${JSON.stringify(b.post)}`;
      case "repeat": return `${JSON.stringify(b.head)} + ${JSON.stringify(b.open)}×${b.count} + ${JSON.stringify(b.middle)} + ${JSON.stringify(b.close)}×${b.count} + ${JSON.stringify(b.tail)}`;
      case "keys": return `{"payload": {${b.count} keys of ${b.keyLength} chars}}`;
      case "utf16": return `utf16le${b.bom ? "+BOM" : ""} ${cut(JSON.stringify(b.text))}`;
    }
  })(req.body);
  const headers = req.headers.map(([n, v]) => `${n}: ${cut(JSON.stringify(v), 60)}`).join(", ");
  return [
    `${cut(JSON.stringify(req.method), 40)} ${cut(JSON.stringify(targetOf(req)), 300)} (route ${req.route}${req.pathMutation === null ? "" : `, path ${req.pathMutation}`})`,
    `  content-type ${JSON.stringify(req.contentType)}; body ${body}; framing ${JSON.stringify(req.framing)}`,
    ...(headers === "" && req.bulk === null ? [] : [`  headers ${headers}${req.bulk === null ? "" : ` + ${JSON.stringify(req.bulk)}`}`]),
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Generators

const STANDARD_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"];
/** Methods Node's parser knows (so they reach the router) that no route serves. */
const OTHER_METHODS = ["TRACE", "CONNECT", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "PURGE", "REPORT", "LINK", "UNLINK", "QUERY", "ACL", "MKCALENDAR", "SUBSCRIBE", "M-SEARCH", "NOTIFY"];

const garbageMethod: fc.Arbitrary<string> = fc.oneof(
  fc.stringMatching(/^[A-Z][A-Z_-]{0,11}$/),
  fc.constantFrom("get", "Get", "put", "pOST", "GET\t", "GE(T", "G\0T", "GET\x7f", "\xc9T", "X".repeat(1000), "", "GET /x", "HTTP/1.1"),
);

function methodArb(route: Route): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 14, arbitrary: fc.constantFrom(...route.methods) },
    { weight: 4, arbitrary: fc.constantFrom(...STANDARD_METHODS) },
    { weight: 1, arbitrary: fc.constantFrom(...OTHER_METHODS) },
    { weight: 1, arbitrary: garbageMethod },
  );
}

const hex2 = (b: number) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
/** Percent-encodes everything but unreserved characters (RFC 3986), byte by byte of the UTF-8. */
export function percentEncode(s: string): string {
  return [...Buffer.from(s, "utf8")].map((b) => (/[A-Za-z0-9._~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : hex2(b))).join("");
}

const ODD_IDS = [
  "", ".", "..", "...", "%2e", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "..%2f..%2fetc%2fpasswd", "../..", "%00", "a%00b", "%zz", "%", "%2", "%%",
  "%u0041", "%C0%AF", "%C0%80", "%ED%A0%80", "%E0%A4%A", "%FF", "%FE%FF", "%EF%BB%BF", "%E2%80%AE", "%2F", "a%2Fb", "a/b", "a//b", "/", "//",
  "a?b", "a#b", "%3F", "%23", "a%20b", "%20", "+", "a+b", "%2B", "%5C", "\\", "~", "CON", "NUL", "__proto__", "constructor", "prototype",
  "toString", "hasOwnProperty", "null", "undefined", "NaN", "-1", "0", "1e400", "*", "'", "(", ")", "!", "$", "&", ";", "=", ",", ":", "@",
  "a;b=c", "a=b", "\"", "<script>", "{}", "|", "^", "`", "%7B%7D", "%25", "%2525", "%252e%252e",
];

const recordIdArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.stringMatching(/^[A-Za-z0-9._~-]{1,24}$/) },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,40}$/) },
  { weight: 3, arbitrary: fc.constantFrom(...ODD_IDS) },
  {
    weight: 1,
    // Long: around the id pattern's 256 and the router's 1024, and up to ~5000 characters (kept under the head limit).
    arbitrary: fc.tuple(fc.constantFrom(255, 256, 257, 1023, 1024, 1025, 2000, 5000), fc.constantFrom("a", "%41", "%C3%A9", ".", "~", "%2F"))
      .map(([n, unit]) => unit.repeat(Math.min(n, Math.floor(15_000 / unit.length)))),
  },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 8 }).map(percentEncode) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 12 }).map((bytes) => [...bytes].map(hex2).join("")) },
  // Raw bytes in the target (latin1 characters): controls, spaces, non-ASCII.
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 6 }).map((bytes) => `a${String.fromCharCode(...bytes)}`) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 4 }).map((s) => Buffer.from(s, "utf8").toString("latin1")) },
);

const numericIdArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 12 }).map(String) },
  { weight: 2, arbitrary: fc.integer({ min: -1000, max: 1_000_000_000 }).map(String) },
  {
    weight: 2,
    arbitrary: fc.constantFrom("01", "1.0", "1.5", "1e3", "1e400", "-1e400", "+1", "0x1", "0b1", "0o7", "%201", "1%20", "%09", "9007199254740993",
      "99999999999999999999999", "NaN", "Infinity", "-Infinity", "-0", "true", "null", "[1]", "1,2", "1;2", "1%2C2", "%31", percentEncode("１"), "4294967296"),
  },
  { weight: 1, arbitrary: recordIdArb },
);

const collectionArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: fc.constant("default") },
  { weight: 1, arbitrary: fc.constantFrom("other", "DEFAULT", "Default", "default%20", "%64efault", "default%00", "", "..", "%zz", "__proto__", "constructor", "toString", "x".repeat(300)) },
  { weight: 1, arbitrary: recordIdArb },
);

const fileArb = fc.constantFrom("index.html", "swagger-ui.css", "swagger-ui-bundle.js", "swagger-initializer.js", "favicon-32x32.png", "oauth2-redirect.html", "logo.svg",
  "../package.json", "..%2fpackage.json", "%2e%2e/%2e%2e/package.json", "....//....//etc/passwd", "", "nope.js", "index.html%00.js", "%zz", ".", "..", "%2e%2e%2f%2e%2e%2fpackage.json");

/** Reads a path parameter the way a lenient server might (percent-decoding byte-wise, twice). */
export function lenientDecode(s: string): string {
  const once = (t: string) => t.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  return once(once(s));
}

/** A numeric parameter the schema would coerce to n (Ajv with coerceTypes reads strings as Number() does). */
function coercesTo(raw: string, forbidden: (n: number) => boolean): boolean {
  const s = lenientDecode(raw);
  return forbidden(Number(s)) || forbidden(Number(s.trim()));
}

/** Keeps the cluster whole: no drain or remove of node 1, no split or merge of a real shard. */
const protectedParam = (arb: fc.Arbitrary<string>, forbidden: (n: number) => boolean) =>
  arb.map((s) => (coercesTo(s, forbidden) ? "1000" : s));

function paramArb(kind: string, method: string, fixedIds: string[]): fc.Arbitrary<string> {
  switch (kind) {
    case "collection": return collectionArb;
    case "record":
      // Reads may name the records written before the fuzzing; nothing else may.
      return method === "GET" || method === "HEAD"
        ? fc.oneof({ weight: 3, arbitrary: recordIdArb }, { weight: 1, arbitrary: fc.constantFrom(...fixedIds) })
        : recordIdArb;
    case "operator": case "shard": case "node": return numericIdArb;
    case "shardNotSplit": return protectedParam(numericIdArb, (n) => n >= 1 && n < 1000);
    case "nodeNotSelf": return protectedParam(numericIdArb, (n) => n === 1);
    case "file": return fileArb;
    default: throw new Error(`unknown parameter ${kind}`);
  }
}

const PATH_MUTATIONS = ["trailing-slash", "double-slash", "dot-segment", "upper-case", "encoded-letter", "absolute-form", "asterisk", "no-leading-slash",
  "matrix", "fragment", "backslash", "prefix", "empty"];

const BAD_VALUES = ["", "-1", "0", "1001", "1.5", "1e3", "1e400", "-1e400", "9007199254740993", "99999999999999999999", "NaN", "Infinity", "-Infinity",
  "0x10", "0b1", "+5", "%205", "5%20", "true", "null", "[]", "%zz", "%00", "%E0%A4%A", "%C3%A9", "__proto__", "a".repeat(3000), "%26", "%3D"];

const base64url = (s: string) => Buffer.from(s, "utf8").toString("base64url");

function queryValueArb(param: QueryParam): fc.Arbitrary<string> {
  const good: Record<QueryParam, fc.Arbitrary<string>> = {
    consistency: fc.constantFrom("linearizable", "eventual"),
    ifVersion: fc.integer({ min: 0, max: 1000 }).map(String),
    limit: fc.integer({ min: 1, max: 1000 }).map(String),
    cursor: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._~-]{1,24}$/).map((id) => `c1.${base64url(id)}`),
      fc.constantFrom("c1.", "c1.AAAA", `c1.${base64url("a/b")}`, `c1.${base64url("x".repeat(300))}`, "c1.%3D%3D", `c1.${base64url("fixed-00")}=`, "c2.YQ")),
    status: fc.constantFrom("running", "all"),
  };
  return fc.oneof(
    { weight: 3, arbitrary: good[param] },
    { weight: 3, arbitrary: fc.constantFrom(...BAD_VALUES, "Linearizable", "strong", "RUNNING", "sequential") },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 12 }).map(percentEncode) },
  );
}

const unknownParamArb = fc.oneof(
  fc.constantFrom("x", "__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "prototype", "Limit", "CONSISTENCY", "consistency%20",
    "a[b]", "a.b", "", "%zz", "%00", "n".repeat(2000), "ifversion", "cursor[]"),
  fc.stringMatching(/^[a-z_]{1,12}$/),
);

function queryArb(route: Route, method: string): fc.Arbitrary<string | null> {
  const known = route.query?.[method] ?? [];
  const pair: fc.Arbitrary<string> = fc.oneof(
    ...(known.length > 0 ? [{ weight: 5, arbitrary: fc.constantFrom(...known).chain((p) => queryValueArb(p).map((v) => `${p}=${v}`)) }] : []),
    // A known parameter of another route (unknown here).
    { weight: 1, arbitrary: fc.constantFrom<QueryParam>("consistency", "ifVersion", "limit", "cursor", "status").chain((p) => queryValueArb(p).map((v) => `${p}=${v}`)) },
    { weight: 2, arbitrary: fc.tuple(unknownParamArb, fc.option(fc.constantFrom("1", "", "x", "%zz"), { nil: null })).map(([k, v]) => (v === null ? k : `${k}=${v}`)) },
  );
  return fc.oneof(
    { weight: 6, arbitrary: fc.constant(null) },
    // Repeated parameters come from the array repeating a pair.
    { weight: 5, arbitrary: fc.array(pair, { minLength: 1, maxLength: 4 }).map((ps) => ps.join("&")) },
    { weight: 1, arbitrary: fc.constantFrom("", "&", "&&&", "=", "==", "&=&", "a=1=2", "%zz", "%00=1", "a[b]=1", "+=+", ";", "?", "#x") },
    { weight: 1, arbitrary: fc.integer({ min: 1000, max: 12_000 }).map((n) => `x=${"a".repeat(n)}`) },
    { weight: 1, arbitrary: fc.integer({ min: 20_000, max: 40_000 }).map((n) => `limit=${"1".repeat(n)}`) },
  );
}

// Bodies

/** Raw number literals JSON.stringify cannot produce. */
const RAW_NUMBERS = ["1e400", "-1e400", "9007199254740993", "-9007199254740993", "9007199254740992", "9007199254740991", "1.5e308", "1.7976931348623157e308",
  "5e-324", "1e-400", "-0", "0.1", "123456789012345678901234567890", "1E+2", "1.0", "0e0", "-0.0", "2e53", "4.35", "1e21", "0.30000000000000004"];
const INVALID_NUMBERS = ["NaN", "Infinity", "-Infinity", "0x10", "01", ".5", "5.", "+1", "1e", "--1", "1_000"];

const payloadValueArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.jsonValue({ maxDepth: 5 }) },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, 0, -1, 0.5, "", [], {}, "☃𝄞\u2028\u2029", { constructor: 1, toString: "x", valueOf: null }, { "": { "": [] } }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 20 }) },
);

/** Values for integer fields: in range, out of range, and of the wrong JSON type. */
const intFieldArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 2000 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 0, 1.5, 2 ** 32, 2 ** 32 - 1, 2 ** 53 - 1, -(2 ** 53 - 1), 1e300) },
  { weight: 2, arbitrary: fc.constantFrom("1", "0", "abc", "", true, false, null, [], {}, [1], { n: 1 }, "1e400", " 1") },
);

/** No config change can ever apply: baseVersion never names a version the settings can be at (they only grow by rollbacks, from 1). */
const baseVersionArb = intFieldArb.map((v) => {
  const n = typeof v === "string" || typeof v === "boolean" ? Number(v) : v;
  return typeof n === "number" && n >= 1 && n < 1000 ? 1000 + Math.floor(n) : v;
});

const text = (t: string): BodySpec => ({ kind: "text", text: t });
const json = (value: unknown): BodySpec => ({ kind: "json", value });

const rawNumberBody: fc.Arbitrary<BodySpec> = fc.tuple(fc.constantFrom(...RAW_NUMBERS, ...INVALID_NUMBERS), fc.constantFrom(0, 1, 2, 3))
  .map(([n, where]) => text([`{"payload":${n}}`, `{"payload":{"n":[1,${n}]}}`, `{"payload":1,"ifVersion":${n}}`, `{"payload":[${n},"${n}"]}`][where]!));

const deepBody: fc.Arbitrary<BodySpec> = fc.record({
  count: fc.constantFrom(31, 32, 33, 64, 1000, 10_000, 25_000),
  open: fc.constantFrom("[", '{"a":', '[{"a":'),
  wrap: fc.boolean(),
  closed: fc.boolean(),
}).map(({ count, open, wrap, closed }): BodySpec => ({
  kind: "repeat", head: wrap ? '{"payload":' : "", open, count, middle: "1",
  close: closed ? (open === "[" ? "]" : open === '{"a":' ? "}" : "}]") : "", tail: wrap && closed ? "}" : "",
}));

const keyTricks: fc.Arbitrary<BodySpec> = fc.oneof(
  fc.constantFrom(
    text('{"payload":{"__proto__":{"polluted":true}}}'), text('{"__proto__":{"payload":1}}'), text('{"payload":1,"__proto__":null}'),
    text('{"payload":{"a":[{"__proto__":[]}]}}'), text('{"payload":{"constructor":{"prototype":{"polluted":true}}}}'),
    text('{"payload":1,"constructor":{"prototype":{"polluted":true}}}'), text('{"payload":{"\\u005f_proto__":1}}'),
    text('{"payload":{"toString":1,"valueOf":null,"hasOwnProperty":"x"}}'), text('{"payload":{"":""}}'), text('{"payload":1,"payload":2}'),
    text('{"payload":"\\ud800"}'), text('{"payload":"a\\udc00b"}'), text('{"payload":{"\\ud800":1}}'), text('{"payload":"\\u0000"}'),
    text('{"payload":"\\uffff\\ufdd0"}'), text('{"payload":"\\ud83d\\ude00"}'),
  ),
  fc.constantFrom(1023, 1024, 1025, 5000, 60_000).map((n): BodySpec => ({ kind: "keys", count: 1, keyLength: n })),
);

const manyFields: fc.Arbitrary<BodySpec> = fc.oneof(
  fc.constantFrom(100, 5000, 7000).map((n): BodySpec => ({ kind: "keys", count: n, keyLength: 3 })),
  fc.constantFrom(9998, 9999, 10_000, 10_001, 30_000).map((n): BodySpec => ({ kind: "repeat", head: '{"payload":[', open: "0,", count: n, middle: "0", close: "", tail: "]}" })),
);

const invalidJson: fc.Arbitrary<BodySpec> = fc.oneof(
  fc.constantFrom("{", "}", "{oops", "[1,]", '{"payload":}', "{'payload':1}", '{"payload":1}x', '{"payload":1} {}', "nul", "tru", '"unterminated',
    '{"payload":"\\x"}', '{"payload":01}', '{"payload":NaN}', '/*c*/{"payload":1}', '\uFEFF{"payload":1}', " ", "\n", "\0", '{"payload":1,}', "[]]",
    '{"a"\0:1}', "", '{"payload":"\t"}').map(text),
  fc.string({ unit: "grapheme", maxLength: 40 }).map(text),
);

const nonUtf8: fc.Arbitrary<BodySpec> = fc.tuple(
  fc.oneof(
    fc.constantFrom<number[]>([0xff], [0xfe, 0xff], [0xc0, 0xaf], [0x80], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc3], [0xf8, 0x88, 0x80, 0x80, 0x80]),
    fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 8 }),
  ),
  fc.constantFrom(0, 1, 2),
).map(([bytes, where]): BodySpec => {
  const places: BodySpec[] = [
    { kind: "bytes", pre: '{"payload":"', bytes, post: '"}' },
    { kind: "bytes", pre: '{"payload":{"', bytes, post: '":1}}' },
    { kind: "bytes", pre: "", bytes, post: "" },
  ];
  return places[where]!;
});

function bigBody(limit: number): fc.Arbitrary<BodySpec> {
  // Total sizes around the limit (at the limit is accepted, one byte more is not), and far over it.
  return fc.constantFrom(limit - 1, limit, limit + 1, 100_000, 1_000_000, 3_000_000)
    .map((total): BodySpec => ({ kind: "repeat", head: '{"payload":"', open: "a", count: total - 14, middle: "", close: "", tail: '"}' }));
}

function hostileBody(limit: number): fc.Arbitrary<BodySpec> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }).map(json) },
    { weight: 2, arbitrary: deepBody },
    { weight: 2, arbitrary: keyTricks },
    { weight: 1, arbitrary: manyFields },
    { weight: 2, arbitrary: invalidJson },
    { weight: 1, arbitrary: nonUtf8 },
    { weight: 2, arbitrary: bigBody(limit) },
    { weight: 1, arbitrary: rawNumberBody },
    { weight: 1, arbitrary: fc.tuple(fc.jsonValue({ maxDepth: 2 }), fc.boolean()).map(([v, bom]): BodySpec => ({ kind: "utf16", text: JSON.stringify({ payload: v }), bom })) },
  );
}

export const ADDRESS = /^(\[[^\]]+\]|[^:\s]+):[0-9]{1,5}$/;
/**
 * Join addresses: the node's own (a join is refused: address_in_use), a port out of range, malformed
 * text. Never a well-formed new address: that join would succeed (a new member). A peer address is
 * never the node's HTTP address (a peer address no member has: it would be let in).
 */
const addressArb = (own: string[]): fc.Arbitrary<string> => fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...own) },
  // host:port in form, the port out of range.
  { weight: 2, arbitrary: fc.constantFrom("127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999", "[::1]:99999", "[::1]:0", "localhost:00000") },
  {
    weight: 2,
    arbitrary: fc.constantFrom("a:b", ":1", "x:", "", "127.0.0.1", "127.0.0.1:1 ", " 127.0.0.1:1", "127.0.0.1:-1", "[::1", "[]:1", "h".repeat(5000), "ö:1x",
      "127.0.0.1:7400:1"),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }).filter((s) => !ADDRESS.test(s)) },
);
const peerArb = addressArb(["{OWN_PEER}"]);
const httpArb = addressArb(["{OWN_PEER}", "{OWN_HTTP}"]);

function specificBody(kind: BodyKind, limit: number): fc.Arbitrary<BodySpec> {
  const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });
  const drop = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  const joinBody = fc.record({
    peer: opt(peerArb), http: opt(httpArb),
    labels: opt(fc.oneof(fc.dictionary(fc.constantFrom("zone", "rack", "host", "other"), fc.oneof(fc.string({ maxLength: 10 }), intFieldArb), { maxKeys: 3 }), fc.jsonValue({ maxDepth: 1 }))),
    role: opt(fc.oneof(fc.constantFrom("standard", "analytics", "standby", "leader", "", "STANDARD"), intFieldArb)),
  }).map((o) => json(drop(o)));
  switch (kind) {
    case "record": return fc.oneof(
      { weight: 6, arbitrary: payloadValueArb.map((v) => json({ payload: v })) },
      { weight: 2, arbitrary: fc.tuple(payloadValueArb, intFieldArb).map(([v, i]) => json({ payload: v, ifVersion: i })) },
      { weight: 1, arbitrary: fc.tuple(payloadValueArb, fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 })).map(([v, extra]) => json({ ...extra, payload: v })) },
      { weight: 2, arbitrary: rawNumberBody },
      { weight: 1, arbitrary: bigBody(limit) },
    );
    case "config": {
      const settingName = fc.oneof(fc.constantFrom(...Object.keys(DEFAULT_PLACEMENT)), fc.constantFrom("noSuchSetting", "__proto__", "constructor", ""));
      const settingValue = fc.oneof(intFieldArb, fc.constantFrom(0.5, -0.5, 1e308, 5e-324));
      return fc.record({
        baseVersion: opt(baseVersionArb),
        settings: opt(fc.oneof(fc.dictionary(settingName, settingValue, { maxKeys: 4 }), fc.jsonValue({ maxDepth: 2 }))),
        note: opt(fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom("n".repeat(200), "n".repeat(201), "n".repeat(5000)), intFieldArb)),
      }).map((o) => json(drop(o)));
    }
    case "rollback": return fc.record({ toVersion: opt(intFieldArb) }).map((o) => json(drop(o)));
    case "split": return fc.record({ at: opt(fc.oneof(intFieldArb, fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 32 - 1))) }).map((o) => json(drop(o)));
    case "move": return fc.record({ from: opt(intFieldArb), to: opt(intFieldArb) }).map((o) => json(drop(o)));
    case "transfer": return fc.record({ to: opt(intFieldArb) }).map((o) => json(drop(o)));
    case "promote": return fc.oneof(fc.record({ with: opt(intFieldArb) }).map((o) => json(drop(o))), fc.constant(text("null")));
    case "join": return fc.oneof(
      // Well-formed but for the addresses: what passes the schema reaches the membership.
      {
        weight: 3,
        arbitrary: fc.record({
          peer: peerArb, http: httpArb,
          labels: opt(fc.record({ zone: fc.constantFrom("z1", "z2") })), role: opt(fc.constantFrom("standard", "analytics", "standby")),
        }).map((o) => json(drop(o))),
      },
      { weight: 2, arbitrary: joinBody },
    );
  }
}

function bodyArb(route: Route, method: string, limit: number): fc.Arbitrary<BodySpec> {
  const none = fc.constant<BodySpec>({ kind: "none" });
  const specific = route.bodies?.[method];
  if (specific !== undefined) return fc.oneof({ weight: 6, arbitrary: specificBody(specific, limit) }, { weight: 3, arbitrary: hostileBody(limit) }, { weight: 1, arbitrary: none });
  if (BODY_METHODS.has(method)) return fc.oneof({ weight: 2, arbitrary: none }, { weight: 1, arbitrary: hostileBody(limit) }, { weight: 1, arbitrary: specificBody("record", limit) });
  return fc.oneof({ weight: 8, arbitrary: none }, { weight: 1, arbitrary: hostileBody(limit) });
}

const contentTypeArb: fc.Arbitrary<string | null> = fc.oneof(
  { weight: 14, arbitrary: fc.constant("application/json") },
  { weight: 2, arbitrary: fc.constant("application/json; charset=utf-8") },
  { weight: 3, arbitrary: fc.constant(null) },
  {
    weight: 4,
    arbitrary: fc.constantFrom("application/json; charset=UTF-16", "application/json;charset=latin1", "APPLICATION/JSON", "Application/Json", "application/json\t",
      " application/json", "application/json ;", "application/json;", "application/json, text/plain", "application/merge-patch+json", "application/problem+json",
      "application/jsonx", "text/json", "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
      "application/octet-stream", "*/*", "", "json", "application/json; charset=\"utf-8\"", "application/json; charset=utf-8; charset=latin1", "application/json; x",
      "application/json; =", "application/\xe9json"),
  },
);

const headerArb: fc.Arbitrary<[string, string]> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom<[string, string]>(["Accept", "text/html"], ["Accept", "application/xml"], ["Accept", "*/*;q=0"], ["Accept-Encoding", "gzip, br, zstd"],
      ["Content-Encoding", "gzip"], ["Content-Encoding", "br"], ["Content-Encoding", "garbage"], ["X-Forwarded-For", "1.2.3.4, <script>"], ["X-Request-Id", "x".repeat(2000)],
      ["Cookie", "a=b; c"], ["Authorization", "Basic %%%"], ["Range", "bytes=0-1"], ["Range", "bytes=abc"], ["If-None-Match", "*"], ["If-Modified-Since", "garbage"],
      ["If-Match", "\"x\""], ["Expect", "100-continue"], ["Expect", "garbage"], ["Origin", "http://evil.example"], ["TE", "trailers"], ["Trailer", "X-T"],
      ["Access-Control-Request-Method", "PUT"], ["X-HTTP-Method-Override", "DELETE"], ["Max-Forwards", "0"], ["Accept-Charset", "utf-16"], ["Content-MD5", "garbage"],
      ["Via", "1.1 x"], ["Forwarded", "for=\"[::1]\";proto=gopher"]),
  },
  { weight: 2, arbitrary: fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,20}$/), fc.stringMatching(/^[\x20-\x7e]{0,40}$/).map((s) => s.trim())) },
  // obs-text: bytes 0x80-0xff are allowed in field values.
  { weight: 1, arbitrary: fc.tuple(fc.constant("X-Fuzz-Text"), fc.string({ unit: "grapheme", minLength: 1, maxLength: 10 }).map((s) => Buffer.from(s, "utf8").toString("latin1").trim())) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 8000 }).map((n): [string, string] => ["X-Fuzz-Long", "l".repeat(n)]) },
);

const framingArb: fc.Arbitrary<Framing> = fc.oneof(
  { weight: 80, arbitrary: fc.constant<Framing>({ kind: "length" }) },
  { weight: 2, arbitrary: fc.constantFrom(1, 7, 1024, 65_536).map((chunk): Framing => ({ kind: "chunked", chunk })) },
  { weight: 1, arbitrary: fc.constantFrom("abc", "-1", "+5", "1.0", "0x10", "", " ", "1 2", "99999999999999999999999", "5, 5", "1e3").map((value): Framing => ({ kind: "cl-bad", value })) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, -1).map((delta): Framing => ({ kind: "cl-dup", delta })) },
  { weight: 1, arbitrary: fc.constant<Framing>({ kind: "te-cl" }) },
  { weight: 1, arbitrary: fc.constantFrom("gzip", "chunked, gzip", "identity", "gzip, chunked", "chunked, chunked", "xchunked", "chunked ;", "\tchunked").map((value): Framing => ({ kind: "te-bad", value })) },
  { weight: 1, arbitrary: fc.constantFrom("size-not-hex", "size-overflow", "size-negative", "data-longer", "no-crlf", "ext-ctl").map((variant) => ({ kind: "chunk-bad", variant }) as Framing) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 1000 }).map((missing): Framing => ({ kind: "truncated", missing })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20 }).map((extra): Framing => ({ kind: "excess", extra })) },
  { weight: 1, arbitrary: fc.constant<Framing>({ kind: "unframed" }) },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constant<Framing>({ kind: "host", variant: "missing", value: "" }),
      fc.constantFrom("other.example", "127.0.0.1:1").map((value): Framing => ({ kind: "host", variant: "double", value })),
      fc.constantFrom("a b", "a/b", "@@", "[::1", "host:port", "h:99999999", "%zz").map((value): Framing => ({ kind: "host", variant: "invalid", value })),
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom("HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/3.0", "HTTP/0.9", "HTTP/9.9", "HTTP/1.1x", "HTTP/11", "HTTP/1", "http/1.1", "HTTPS/1.1", "", "HTTP/1.1 ", "HTTP/1.1\0").map((version): Framing => ({ kind: "version", version })) },
  { weight: 1, arbitrary: fc.constant<Framing>({ kind: "bare-lf" }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom("space-before-colon", "obs-fold", "nul-in-value", "ctl-in-value", "bad-name", "empty-name", "no-colon", "leading-whitespace")
      .map((variant) => ({ kind: "header-syntax", variant }) as Framing),
  },
  { weight: 1, arbitrary: fc.constant<Framing>({ kind: "keep-alive" }) },
  { weight: 1, arbitrary: fc.constantFrom("websocket", "h2c", "garbage").map((protocol): Framing => ({ kind: "upgrade", protocol })) },
);

/** `arb` one time in `1 + odds`, else null. */
const rarely = <T>(arb: fc.Arbitrary<T>, odds: number): fc.Arbitrary<T | null> =>
  fc.oneof({ weight: odds, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });

const bulkArb = rarely(fc.oneof(
  fc.constantFrom(30, 300, 1500, 3000).map((count) => ({ kind: "many" as const, count })),
  fc.constantFrom(17 * 1024 + 2000, 40_000, 100_000).map((size) => ({ kind: "huge" as const, size })),
), 25);

export interface ArbOptions {
  /** The node's body limit (bodies around and far over it are generated). */
  bodyLimit: number;
  /** The ids of the records written before the fuzzing. */
  fixedIds: string[];
}

function routeRequestArb(route: Route, opts: ArbOptions): fc.Arbitrary<FuzzRequest> {
  const names = [...route.template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  return methodArb(route).chain((method) => fc.record({
    route: fc.constant(route.name),
    method: fc.constant(method),
    params: fc.tuple(...names.map((n) => paramArb(n, method, opts.fixedIds))).map((values) => Object.fromEntries(names.map((n, i) => [n, values[i]!]))),
    pathMutation: rarely(fc.constantFrom(...PATH_MUTATIONS), 12),
    query: queryArb(route, method),
    headers: fc.array(headerArb, { maxLength: 3 }),
    bulk: bulkArb,
    contentType: contentTypeArb,
    body: bodyArb(route, method, opts.bodyLimit),
    framing: framingArb,
  })).map(protectFixed);
}

/**
 * The records written before the fuzzing have ids with "fixed" in them: a request other than GET or
 * HEAD whose record id could read as one (any case, percent-encoded once or twice) names another.
 */
function protectFixed(req: FuzzRequest): FuzzRequest {
  if (req.method === "GET" || req.method === "HEAD" || req.params.record === undefined) return req;
  if (!/fixed/i.test(lenientDecode(req.params.record))) return req;
  return { ...req, params: { ...req.params, record: `w${req.params.record.replace(/[fF]|%[46]6/g, "")}` } };
}

export function requestArb(opts: ArbOptions): fc.Arbitrary<FuzzRequest> {
  const arb = fc.oneof(...ROUTES.map((r) => ({ weight: Math.round(r.weight * 2), arbitrary: routeRequestArb(r, opts) })));
  return arb.map((req) => ({ ...req, [fc.toStringMethod]: () => describe(req) }));
}
