/**
 * The client's requests: JSON over HTTP/1.1 keep-alive connections (one pool per client, closed by
 * `close()`), across the endpoints it was given. A request that may be asked again is retried with
 * backoff, on the next endpoint when one cannot be reached: reads, writes carrying an idempotency key
 * (the node answers a repeated key with the first outcome) and batch upserts (at least once: a plain
 * put sent twice leaves the same record, unless another client wrote it in between). Any refusal whose error-table entry says nothing was applied and that a
 * retry may succeed is retried too. Everything else comes back as a ShoalError.
 */
import { Agent as HttpAgent, type ClientRequest, type IncomingMessage, type RequestOptions, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { assert } from "../util/assert.js";
import { ShoalError } from "./errors.js";
import type { Applied } from "../api/error-table.js";
import { SESSION_HEADER, SessionTokens } from "./session.js";
import { LEADER_HEADER } from "../api/session.js";
import { type Http1Answer, Http1Pool, waitedForPool, wasNotSent } from "./http1.js";

/** Node endpoints remembered from the shard map (a cluster has fewer nodes than this). */
const URL_CACHE_MAX = 1024;

export interface TransportOptions {
  /** Base URLs of nodes (`http://host:port`): any node is a gateway. */
  endpoints: readonly string[];
  /** One attempt's time limit. */
  timeoutMs: number;
  /** Attempts of one request, the first included. */
  attemptsMax: number;
  /** The longest pause between two attempts. */
  backoffMsMax: number;
  /** Connections kept per endpoint. */
  socketsPerEndpointMax: number;
  /** Reads (GETs) in flight on one connection at most, pipelined (1: one request per connection at a time). */
  pipelineDepthMax: number;
  /**
   * Requests sent straight to one shard map node (a leader) at once, at most; more go through the
   * endpoints in turn, which forward them (so that one node does not parse every client's request alone).
   */
  directInFlightMax: number;
}

export interface Call {
  method: "GET" | "PUT" | "POST" | "DELETE" | "PATCH";
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** The request may change state (its failure without an answer leaves `applied: unknown`). */
  write: boolean;
  /** Asking again is safe whatever happened to the first attempt (reads, keyed writes, batch upserts). */
  idempotent: boolean;
  /** A node to try first (the shard's leader, from the shard map); the endpoints after it. */
  prefer?: string | null;
  /** This call's attempt time limit, when longer than the client's (a search's own timeoutMs, say). */
  timeoutMs?: number;
  /** Carry the session's token (a read at consistency "session"). */
  session?: boolean;
}

/** Refusals that say "ask another node": the next attempt goes to the next endpoint. */
const ASK_ANOTHER = new Set(["shutting_down", "not_ready", "overloaded"]);

/** Whether an error of a request is the network's (the node may not have seen it), not the request's own fault. */
function networkError(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" && !code.startsWith("ERR_");
}

function closedError(applied: Applied): ShoalError {
  return ShoalError.ofClient("client_closed", "the client was closed: make a new one", applied);
}

function unreachable(to: URL, e: unknown, write: boolean): ShoalError {
  const cause = (e as { code: string }).code;
  const why = cause === "ECONNREFUSED" ? "connection refused" : (e as Error).message;
  return ShoalError.ofClient("unreachable", `cannot reach ${to.origin}: ${why}`, write ? "unknown" : "no", 0, { endpoint: to.origin, cause });
}

function notJson(to: URL, a: Answer, write: boolean): ShoalError {
  return ShoalError.ofClient("bad_answer", `${to.origin} answered HTTP ${a.status} with a body that is not JSON: ${a.notJson}`, write ? "unknown" : "no", a.status, { body: a.notJson });
}

interface Answer {
  status: number;
  body: unknown;
  /** The start of a body that is not JSON (null: JSON, or empty). */
  notJson: string | null;
  retryAfterS: number | null;
  /** The answer's session token (api/session.ts), if it carried one. */
  session: string | undefined;
  /** `shard:node`: the leader a forwarded write reached (api/session.ts LEADER_HEADER). */
  leader: string | undefined;
}

export class Transport {
  private readonly endpoints: URL[];
  /** Request/answer calls. */
  private readonly pool: Http1Pool;
  /** Event streams (`open`), few and long-lived. */
  private readonly http: HttpAgent;
  private readonly https: HttpsAgent;
  /** The endpoint tried first: the last one that answered. */
  private preferred = 0;
  /** Turns over the endpoints for requests a busy shard map node does not take (directInFlightMax). */
  private spread = 0;
  private closed = false;
  /** What this client's answers showed of each shard: every answer's token is merged in. */
  readonly session: SessionTokens;
  /** Told of the leader a gateway forwarded a write to (the router takes it into its map). */
  onLeaderHint: ((hint: string) => void) | null = null;
  /** Told of a node from the shard map that could not be reached (the router forgets it). */
  onPreferredUnreachable: ((base: string) => void) | null = null;

  constructor(private readonly opts: TransportOptions, sessionToken?: string) {
    this.session = new SessionTokens(sessionToken);
    assert(opts.endpoints.length > 0, "a client needs at least one endpoint");
    assert(opts.attemptsMax >= 1 && opts.timeoutMs > 0 && opts.backoffMsMax >= 0 && opts.directInFlightMax >= 1, "positive limits");
    this.endpoints = opts.endpoints.map((e) => {
      const url = new URL(e);
      if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`endpoint ${e}: only http: and https: URLs`);
      return url;
    });
    this.pool = new Http1Pool(opts.socketsPerEndpointMax, opts.pipelineDepthMax);
    this.http = new HttpAgent({ keepAlive: false });
    this.https = new HttpsAgent({ keepAlive: false });
  }

  async call<T>(c: Call): Promise<T> {
    // A body JSON cannot carry is the caller's fault: thrown now, never sent or retried.
    const body = c.body === undefined ? undefined : Buffer.from(JSON.stringify(c.body));
    const timeoutMs = Math.max(this.opts.timeoutMs, c.timeoutMs ?? 0);
    let at = this.preferred;
    let last: ShoalError | null = null;
    // Once an attempt of a write may have reached a node, the call's outcome can only be unknown or
    // known from an answer: a later attempt that never left the client does not make it "not applied".
    let mayHaveApplied = false;
    const outcome = (e: ShoalError) => (mayHaveApplied ? e.afterAttemptsThatMayHaveApplied() : e);
    let hintS: number | null = null;
    let direct = c.prefer === undefined || c.prefer === null ? null : this.urlOf(c.prefer);
    if (direct !== null && this.pool.inFlight(direct) >= this.opts.directInFlightMax) {
      // The node is busy with this client's requests already: an endpoint forwards this one (one hop
      // more, and its parsing off the leader), another endpoint than that node where there is one.
      const busy = direct.origin;
      direct = null;
      at = this.spread++ % this.endpoints.length;
      if (this.endpoints[at]!.origin === busy && this.endpoints.length > 1) at = (at + 1) % this.endpoints.length;
    }
    for (let attempt = 1; attempt <= this.opts.attemptsMax; attempt++) {
      if (attempt > 1) await pause(this.backoffMs(attempt, hintS));
      if (this.closed) throw closedError(mayHaveApplied ? "unknown" : last?.applied ?? "no");
      const to = direct ?? this.endpoints[at]!;
      let a: Answer;
      try {
        a = await this.once(to, c, body, timeoutMs);
      } catch (e) {
        if (!networkError(e)) throw e; // a header Node refuses, say: the request's own fault
        // Never sent (no connection, none free in time): nothing applied, and safe to send again.
        const sent = !wasNotSent(e);
        if (c.write && sent) mayHaveApplied = true;
        last = unreachable(to, e, c.write && sent);
        hintS = null;
        if (direct !== null) {
          // The shard map's node is gone or moved: the gateways take it from here, at once (this
          // attempt does not count), and the map forgets it, unless only this client's own
          // connections to it were busy.
          if (!waitedForPool(e)) this.onPreferredUnreachable?.(c.prefer!);
          direct = null;
          if (!c.idempotent && c.write && sent) break;
          attempt--;
          continue;
        }
        at = (at + 1) % this.endpoints.length;
        if (!c.idempotent && c.write && sent) break;
        continue;
      }
      if (direct === null) this.preferred = at;
      direct = null;
      this.session.merge(a.session);
      if (a.leader !== undefined) this.onLeaderHint?.(a.leader);
      if (a.notJson !== null) {
        last = notJson(to, a, c.write);
        break;
      }
      if (a.status < 400) return a.body as T;
      last = ShoalError.fromAnswer(a.status, a.body, c.write);
      if (c.write && last.applied === "unknown") mayHaveApplied = true;
      hintS = a.retryAfterS;
      if (!last.retryable || (last.applied === "unknown" && !c.idempotent)) break;
      if (ASK_ANOTHER.has(last.code) && to === this.endpoints[at]) at = (at + 1) % this.endpoints.length;
    }
    throw outcome(last!);
  }

  /**
   * A long-lived GET (an event stream): the response once a node answers 200, from the endpoints in
   * turn (each tried once); a refusal is thrown as its ShoalError. The caller reads and destroys it.
   */
  async open(path: string): Promise<IncomingMessage> {
    let last: ShoalError | null = null;
    for (let i = 0; i < this.endpoints.length; i++) {
      if (this.closed) throw closedError("no");
      const to = this.endpoints[(this.preferred + i) % this.endpoints.length]!;
      let res: IncomingMessage;
      try {
        res = await new Promise<IncomingMessage>((resolve, reject) => {
          const req = this.request(to, path, { headers: { accept: "text/event-stream" } }, resolve);
          req.on("error", reject);
          req.end();
        });
      } catch (e) {
        if (!networkError(e)) throw e;
        last = unreachable(to, e, false);
        continue;
      }
      if (res.statusCode === 200) return res;
      const a = await collect(res);
      throw a.notJson !== null ? notJson(to, a, false) : ShoalError.fromAnswer(a.status, a.body, false);
    }
    throw last!;
  }

  private readonly urls = new Map<string, URL>();

  /** A node's URL from the shard map, or null when it does not parse (the gateways take the request). */
  private urlOf(base: string): URL | null {
    let url = this.urls.get(base);
    if (url === undefined) {
      try {
        url = new URL(base);
      } catch {
        return null;
      }
      if (this.urls.size < URL_CACHE_MAX) this.urls.set(base, url);
    }
    return url;
  }

  /** Ends the pooled connections; later calls fail with `client_closed`. */
  close(): void {
    this.closed = true;
    this.pool.close();
    this.http.destroy();
    this.https.destroy();
  }

  /** The pause before `attempt`: the server's Retry-After when it gave one, else doubling from 100 ms. */
  private backoffMs(attempt: number, retryAfterS: number | null): number {
    const ceiling = Math.min(this.opts.backoffMsMax, retryAfterS !== null ? retryAfterS * 1000 : 50 * 2 ** attempt);
    // Jittered, so that clients refused together do not come back together.
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /** A request to `base` over this client's pool (http or https as the URL says). */
  private request(base: URL, path: string, opts: RequestOptions, onResponse: (res: IncomingMessage) => void): ClientRequest {
    const https = base.protocol === "https:";
    return (https ? httpsRequest : httpRequest)(new URL(path, base), { ...opts, agent: https ? this.https : this.http }, onResponse);
  }

  private async once(base: URL, c: Call, body: Buffer | undefined, timeoutMs: number): Promise<Answer> {
    const headers: Record<string, string> = { accept: "application/json", ...c.headers };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (c.session === true) headers[SESSION_HEADER] = this.session.token();
    return answerOf(await this.pool.request(base, c.method, c.path, headers, body, timeoutMs));
  }
}

function answerOf(r: Http1Answer): Answer {
  return parsed(r.status, r.body.toString("utf8"), r.headers.get("retry-after"), r.headers.get(SESSION_HEADER), r.headers.get(LEADER_HEADER));
}

async function collect(res: IncomingMessage): Promise<Answer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  const h = (name: string) => {
    const v = res.headers[name];
    return typeof v === "string" ? v : undefined;
  };
  return parsed(res.statusCode ?? 0, Buffer.concat(chunks).toString("utf8"), h("retry-after"), h(SESSION_HEADER), h(LEADER_HEADER));
}

function parsed(status: number, text: string, retryAfterHeader: string | undefined, session: string | undefined, leader: string | undefined): Answer {
  const retryAfter = Number(retryAfterHeader);
  let body: unknown = null;
  let notJson: string | null = null;
  if (text !== "") {
    try {
      body = JSON.parse(text);
    } catch {
      notJson = text.replace(/\s+/g, " ").trim().slice(0, 200);
    }
  }
  return {
    status, body, notJson, session, leader,
    retryAfterS: retryAfterHeader !== undefined && Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : null,
  };
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
