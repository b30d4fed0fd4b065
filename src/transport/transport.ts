/**
 * Node-to-node messaging over TCP. Each ordered pair of nodes has three one-way connections, one per
 * plane, so that bulk snapshot bytes never sit in front of a heartbeat:
 *   control: heartbeats and votes (small, latency-sensitive);
 *   data:    log replication and forwarded requests (throughput);
 *   bulk:    snapshot chunks (bandwidth).
 * Messages queued during one loop turn travel to a peer as one frame per plane (flush()). Each
 * connection has a bounded queue of frames and honours socket backpressure; when the bound is hit, new
 * frames are dropped and reported (Raft treats that as message loss). Connections are made lazily, with
 * exponential backoff and jitter, behind a circuit breaker per peer.
 *
 * Fault hooks (drop rate, delay, cut links) exist for tests and chaos drills and are refused unless the
 * transport was created with `testFaults: true`.
 */
import { type Server, type Socket, createConnection, createServer } from "node:net";
import { assert } from "../util/assert.js";
import { Breaker, type BreakerOptions, DEFAULT_BREAKER } from "./breaker.js";
import { FrameDecoder, encodeFrame } from "./framing.js";
import { type Logger } from "../util/logger.js";

export type Plane = "control" | "data" | "bulk";
export const PLANES: readonly Plane[] = ["control", "data", "bulk"];

/** One message for one Raft group (or group 0 for node-level messages). */
export interface Envelope {
  group: number;
  msg: unknown;
}

export interface PeerAddress {
  host: string;
  port: number;
}

export interface TransportFaults {
  /** Probability that a frame is dropped. */
  dropRate: number;
  /** Extra delay before a frame is handed to the socket. */
  delayMs: number;
  /** Peers whose links are cut (frames to them are dropped). */
  cut: Set<number>;
}

export interface TransportOptions {
  nodeId: number;
  listen: PeerAddress;
  onReceive: (from: number, plane: Plane, envelopes: Envelope[]) => void;
  /** Frames that could not be queued or sent (the peer is unreachable for now). */
  onUnreachable?: (peer: number, plane: Plane) => void;
  /**
   * A connection to or from the peer closed, or one to it could not be made (not called once stopped).
   * A killed process's connections are closed by its kernel at once: the fastest sign that it is gone.
   */
  onDisconnect?: (peer: number) => void;
  /** Bound on queued bytes per connection. */
  queueBytes?: Partial<Record<Plane, number>>;
  breaker?: BreakerOptions;
  connectTimeoutMs?: number;
  /** Uniform [0, 1): jitter and fault dice. */
  random?: () => number;
  now?: () => number;
  testFaults?: boolean;
  logger?: Logger;
}

const DEFAULT_QUEUE_BYTES: Record<Plane, number> = { control: 4 << 20, data: 64 << 20, bulk: 64 << 20 };

export interface LinkStats {
  peer: number;
  plane: Plane;
  /** Which link object this is: a peer's link removed and made again gets a new one (its counts start over). */
  link: number;
  connected: boolean;
  queuedFrames: number;
  queuedBytes: number;
  framesSent: number;
  framesDropped: number;
  bytesSent: number;
}

/** The outbound connection for one (peer, plane). */
class Link {
  socket: Socket | null = null;
  connecting = false;
  /** Frames waiting for the socket. Invariant: queuedBytes = sum of their sizes <= the plane's bound. */
  queue: Buffer[] = [];
  queuedBytes = 0;
  writable = false;
  framesSent = 0;
  framesDropped = 0;
  bytesSent = 0;
  reconnectTimer: NodeJS.Timeout | null = null;

  constructor(readonly peer: number, readonly plane: Plane, readonly id: number) {}
}

export class Transport {
  private readonly opts: TransportOptions;
  private readonly peers = new Map<number, PeerAddress>();
  private readonly breakers = new Map<number, Breaker>();
  private readonly links = new Map<string, Link>();
  /** Links made so far (each link's id). */
  private linksMade = 0;
  /** Envelopes queued in the current loop turn, per link key. */
  private pending = new Map<string, Envelope[]>();
  private server: Server | null = null;
  private readonly inbound = new Set<Socket>();
  private faults: TransportFaults | null = null;
  private readonly random: () => number;
  private readonly now: () => number;
  private stopped = false;

  constructor(opts: TransportOptions) {
    this.opts = opts;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
  }

  private log(line: string): void {
    this.opts.logger?.debug(`transport ${this.opts.nodeId}: ${line}`);
  }

  /** Starts listening; resolves with the bound port (useful with port 0). */
  async start(): Promise<number> {
    assert(this.server === null, "transport already started");
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.opts.listen.port, this.opts.listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const addr = server.address();
    assert(addr !== null && typeof addr === "object", "server has no address");
    return addr.port;
  }

  /** Closes every connection and the listener. Queued frames are discarded. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const link of this.links.values()) {
      if (link.reconnectTimer !== null) clearTimeout(link.reconnectTimer);
      link.socket?.destroy();
    }
    for (const s of this.inbound) s.destroy();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  setPeer(id: number, addr: PeerAddress): void {
    assert(id !== this.opts.nodeId, "a node is not its own peer");
    this.peers.set(id, addr);
    if (!this.breakers.has(id)) this.breakers.set(id, new Breaker(this.opts.breaker ?? DEFAULT_BREAKER));
  }

  removePeer(id: number): void {
    this.peers.delete(id);
    this.breakers.delete(id);
    for (const plane of PLANES) {
      const key = linkKey(id, plane);
      const link = this.links.get(key);
      if (link !== undefined) {
        if (link.reconnectTimer !== null) clearTimeout(link.reconnectTimer);
        link.socket?.destroy();
        this.links.delete(key);
      }
      this.pending.delete(key);
    }
  }

  /** Queues an envelope for the current loop turn. Returns false if the peer cannot be reached now. */
  send(peer: number, plane: Plane, env: Envelope): boolean {
    const breaker = this.breakers.get(peer);
    if (breaker === undefined || !breaker.allows(this.now())) return false;
    const key = linkKey(peer, plane);
    let list = this.pending.get(key);
    if (list === undefined) this.pending.set(key, (list = []));
    list.push(env);
    return true;
  }

  /** Sends everything queued in this loop turn: one frame per (peer, plane). */
  flush(): void {
    const pending = this.pending;
    this.pending = new Map();
    for (const [key, envelopes] of pending) {
      const [peer, plane] = parseKey(key);
      for (const frame of this.encodeFrames(envelopes)) {
        const faults = this.faults;
        if (faults !== null) {
          if (faults.cut.has(peer) || this.random() < faults.dropRate) continue;
          if (faults.delayMs > 0) {
            setTimeout(() => this.enqueueFrame(peer, plane, frame), faults.delayMs);
            continue;
          }
        }
        this.enqueueFrame(peer, plane, frame);
      }
    }
  }

  /**
   * One frame for a turn's envelopes; if they cannot be encoded together (over the frame limit, or one
   * of them cannot be encoded at all), a frame each, and an envelope that cannot be encoded alone is
   * dropped and counted: its sender times out instead of the whole process dying in a timer callback.
   */
  private encodeFrames(envelopes: Envelope[]): Buffer[] {
    try {
      return [encodeFrame({ envs: envelopes })];
    } catch {
      const frames: Buffer[] = [];
      for (const env of envelopes) {
        try {
          frames.push(encodeFrame({ envs: [env] }));
        } catch {
          this.unencodableEnvelopes++;
        }
      }
      return frames;
    }
  }

  /** Envelopes dropped because they could not be encoded (too large or too deep for the codec). */
  unencodableEnvelopes = 0;

  private link(peer: number, plane: Plane): Link {
    const key = linkKey(peer, plane);
    let link = this.links.get(key);
    if (link === undefined) this.links.set(key, (link = new Link(peer, plane, ++this.linksMade)));
    return link;
  }

  private enqueueFrame(peer: number, plane: Plane, frame: Buffer): void {
    if (this.stopped || !this.peers.has(peer)) return;
    const link = this.link(peer, plane);
    const bound = this.opts.queueBytes?.[plane] ?? DEFAULT_QUEUE_BYTES[plane];
    if (link.queuedBytes + frame.byteLength > bound) {
      link.framesDropped++;
      this.opts.onUnreachable?.(peer, plane);
      return;
    }
    link.queue.push(frame);
    link.queuedBytes += frame.byteLength;
    if (link.socket === null && !link.connecting && link.reconnectTimer === null) this.connect(link);
    else this.drain(link);
  }

  private connect(link: Link): void {
    const addr = this.peers.get(link.peer);
    const breaker = this.breakers.get(link.peer);
    if (addr === undefined || breaker === undefined || this.stopped) return;
    if (!breaker.allows(this.now())) {
      this.dropQueue(link);
      return;
    }
    let socket: Socket;
    try {
      socket = createConnection({ host: addr.host, port: addr.port });
    } catch {
      // An address the socket layer refuses outright (a port out of range): unreachable, like a refused
      // connection, never an exception in the loop that asked to send.
      breaker.onFailure(this.now());
      this.dropQueue(link);
      return;
    }
    link.connecting = true;
    socket.setNoDelay(true);
    socket.setTimeout(this.opts.connectTimeoutMs ?? 3000);
    let connected = false;
    socket.once("connect", () => {
      connected = true;
      socket.setTimeout(0);
      link.connecting = false;
      link.socket = socket;
      link.writable = true;
      breaker.onSuccess();
      socket.write(encodeFrame({ hello: { from: this.opts.nodeId, plane: link.plane } }));
      this.drain(link);
    });
    socket.on("drain", () => {
      link.writable = true;
      this.drain(link);
    });
    socket.on("timeout", () => socket.destroy(new Error("connect timeout")));
    socket.on("error", () => undefined); // reported through "close"
    socket.on("data", () => undefined); // one-way: the peer never writes on this connection
    socket.on("close", () => {
      link.socket = null;
      link.connecting = false;
      link.writable = false;
      if (this.stopped) return;
      if (!connected) breaker.onFailure(this.now());
      this.opts.onDisconnect?.(link.peer);
      if (link.queue.length > 0) this.scheduleReconnect(link, breaker);
    });
  }

  private scheduleReconnect(link: Link, breaker: Breaker): void {
    if (!breaker.allows(this.now())) {
      this.dropQueue(link);
      return;
    }
    const delay = breaker.nextDelayMs(this.random());
    link.reconnectTimer = setTimeout(() => {
      link.reconnectTimer = null;
      this.connect(link);
    }, delay);
  }

  private dropQueue(link: Link): void {
    if (link.queue.length === 0) return;
    link.framesDropped += link.queue.length;
    link.queue = [];
    link.queuedBytes = 0;
    this.opts.onUnreachable?.(link.peer, link.plane);
  }

  /** Writes queued frames while the socket accepts them (backpressure: wait for "drain"). */
  private drain(link: Link): void {
    const socket = link.socket;
    if (socket === null || !link.writable) return;
    while (link.queue.length > 0 && link.writable) {
      const frame = link.queue.shift()!;
      link.queuedBytes -= frame.byteLength;
      link.framesSent++;
      link.bytesSent += frame.byteLength;
      link.writable = socket.write(frame);
    }
  }

  private accept(socket: Socket): void {
    if (this.stopped) {
      socket.destroy();
      return;
    }
    this.inbound.add(socket);
    socket.setNoDelay(true);
    const decoder = new FrameDecoder();
    let from = 0;
    let plane: Plane | null = null;
    socket.on("data", (chunk: Buffer) => {
      let frames: unknown[];
      try {
        frames = decoder.push(chunk);
      } catch (e) {
        this.log(`closing inbound connection: ${(e as Error).message}`);
        socket.destroy();
        return;
      }
      for (const f of frames) {
        const frame = f as { hello?: { from: number; plane: Plane }; envs?: Envelope[] };
        if (plane === null) {
          const hello = frame.hello;
          if (hello === undefined || !Number.isInteger(hello.from) || !PLANES.includes(hello.plane)) {
            this.log("closing inbound connection: no valid hello");
            socket.destroy();
            return;
          }
          from = hello.from;
          plane = hello.plane;
          this.peerConnected(from);
          continue;
        }
        if (!Array.isArray(frame.envs)) {
          this.log(`closing inbound connection from ${from}: malformed frame`);
          socket.destroy();
          return;
        }
        this.opts.onReceive(from, plane, frame.envs);
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.inbound.delete(socket);
      if (plane !== null && !this.stopped) this.opts.onDisconnect?.(from);
    });
  }

  /**
   * A peer connected to this node, so it is up (e.g. restarted): its breaker closes, and links waiting
   * out a reconnect backoff connect now. Otherwise a peer back from a crash would hear nothing from this
   * node until the backoff or the breaker's cooldown (up to 5 s) ran out, and would find no quorum.
   */
  private peerConnected(peer: number): void {
    const breaker = this.breakers.get(peer);
    if (breaker === undefined || this.stopped) return;
    breaker.onSuccess();
    for (const plane of PLANES) {
      const link = this.links.get(linkKey(peer, plane));
      if (link === undefined || link.reconnectTimer === null) continue;
      clearTimeout(link.reconnectTimer);
      link.reconnectTimer = null;
      this.connect(link);
    }
  }

  /** Test and chaos hooks; refused unless the transport was created in test mode. */
  setFaults(faults: Partial<TransportFaults> | null): void {
    if (this.opts.testFaults !== true) throw new Error("fault hooks are only available in test mode");
    this.faults = faults === null ? null : { dropRate: 0, delayMs: 0, cut: new Set(), ...faults };
  }

  breakerState(peer: number): string {
    return this.breakers.get(peer)?.current(this.now()) ?? "unknown";
  }

  stats(): LinkStats[] {
    return [...this.links.values()].map((l) => ({
      peer: l.peer, plane: l.plane, link: l.id, connected: l.socket !== null, queuedFrames: l.queue.length,
      queuedBytes: l.queuedBytes, framesSent: l.framesSent, framesDropped: l.framesDropped, bytesSent: l.bytesSent,
    }));
  }
}

const linkKey = (peer: number, plane: Plane) => `${peer}/${plane}`;
function parseKey(key: string): [number, Plane] {
  const [peer, plane] = key.split("/");
  return [Number(peer), plane as Plane];
}
