/**
 * The node world's network: one SimTransport per node incarnation, with the surface of the real
 * transport (node/host.ts NodeTransport). A turn's envelopes go as one frame per (peer, plane), encoded
 * and decoded by the real framing (transport/framing.ts), so a receiver never shares an object with its
 * sender and gets exactly the shapes TCP would give it.
 *
 * Faults, all drawn from the seed: latency (per-link FIFO unless reordering is on), drops, duplicates
 * (of frames that carry only Raft messages), partitions (both directions), and crashed nodes. A crashed node's peers learn of it as they would from
 * their kernels (onDisconnect), once at the crash and again each time they send it something (a
 * refused connection); a partition, like a cut cable, tells nobody. Messages in flight to an
 * incarnation that died are lost with it.
 */
import type { NodeTransport } from "../../node/host.js";
import type { Envelope, LinkStats, Plane, TransportFaults, TransportOptions } from "../../transport/transport.js";
import { FrameDecoder, encodeFrame } from "../../transport/framing.js";
import { NODE_GROUP } from "../../node/group.js";
import { assert } from "../../util/assert.js";
import type { Random } from "../../util/rng.js";
import type { SimScheduler } from "./scheduler.js";

export interface LinkFaults {
  dropProbability: number;
  duplicateProbability: number;
  /** Frames of one link may overtake each other (otherwise FIFO per link, as TCP). */
  reorder: boolean;
  delayMsMin: number;
  delayMsMax: number;
}

/** The scheduler's owner of a node's events and clock (one per node, across its incarnations). */
export function nodeOwner(id: number): string {
  return `node${id}`;
}

export const CALM_LINKS: LinkFaults = { dropProbability: 0, duplicateProbability: 0, reorder: false, delayMsMin: 1, delayMsMax: 5 };

export class SimTransport {
  stopped = false;
  private readonly peers = new Set<number>();
  /** Envelopes queued in this turn, per peer and plane. */
  private pending = new Map<string, Envelope[]>();
  private faults: TransportFaults | null = null;
  framesSent = 0;

  constructor(readonly nodeId: number, readonly opts: TransportOptions, private readonly net: SimNetwork) {}

  start(): Promise<number> {
    return Promise.resolve(this.opts.listen.port);
  }

  stop(): Promise<void> {
    this.stopped = true;
    return Promise.resolve();
  }

  setPeer(id: number): void {
    assert(id !== this.nodeId, "a node is not its own peer");
    this.peers.add(id);
  }

  send(peer: number, plane: Plane, env: Envelope): boolean {
    if (this.stopped || !this.peers.has(peer)) return false;
    const key = `${peer}/${plane}`;
    let list = this.pending.get(key);
    if (list === undefined) this.pending.set(key, (list = []));
    list.push(env);
    return true;
  }

  flush(): void {
    const pending = this.pending;
    this.pending = new Map();
    if (this.stopped) return;
    for (const [key, envs] of pending) {
      const [peer, plane] = key.split("/") as [string, Plane];
      const to = Number(peer);
      const f = this.faults;
      if (f !== null && (f.cut.has(to) || this.net.random.float() < f.dropRate)) continue;
      this.framesSent++;
      this.net.carry(this, to, plane, encodeFrame({ envs }), envs.every((e) => e.group !== NODE_GROUP));
    }
  }

  /** The fault hooks of the real transport (used by the API's fault route); delay is not modelled. */
  setFaults(faults: Partial<TransportFaults> | null): void {
    this.faults = faults === null ? null : { dropRate: faults.dropRate ?? 0, delayMs: faults.delayMs ?? 0, cut: faults.cut ?? new Set() };
  }

  stats(): LinkStats[] {
    return [];
  }
}

export class SimNetwork {
  private readonly current = new Map<number, SimTransport>();
  /** Node id -> its side of the partition; nodes on different sides cannot talk. */
  private side = new Map<number, number>();
  private links: LinkFaults = CALM_LINKS;
  /** Per directed link: when its last frame arrives (FIFO unless reordering). */
  private readonly lastArrivalMs = new Map<string, number>();
  readonly counts = { sent: 0, delivered: 0, dropped: 0, duplicated: 0 };
  /**
   * When > 0, a crashed node's peers read a last frame from it (a keepalive) this many ms after they
   * saw its connection close, before their next turn: a real node reads a peer's connections (one per
   * plane, each way) in no set order, so a frame sent just before a crash on one connection can be read
   * after another's close, and while a turn waits for its fsync. (The sim's disk takes no time, so
   * the time passes by a jump of the peer's clock.)
   */
  lastFrameAfterCloseMs = 0;

  constructor(private readonly scheduler: SimScheduler, readonly random: Random) {}

  /** A node's transport for its new incarnation (the earlier one is silenced). */
  transportFor(nodeId: number, opts: TransportOptions): NodeTransport {
    const old = this.current.get(nodeId);
    if (old !== undefined) old.stopped = true;
    const t = new SimTransport(nodeId, opts, this);
    this.current.set(nodeId, t);
    return t as unknown as NodeTransport;
  }

  /** The node crashed: its transport is silenced, and every peer's kernel closes their connections. */
  nodeDown(nodeId: number): void {
    const t = this.current.get(nodeId);
    if (t === undefined) return;
    t.stopped = true;
    for (const other of this.current.values()) {
      if (other === t || other.stopped) continue;
      this.scheduler.schedule(() => {
        if (other.stopped) return;
        other.opts.onDisconnect?.(nodeId);
        if (this.lastFrameAfterCloseMs === 0) return;
        this.scheduler.jumpClock(nodeOwner(other.nodeId), this.lastFrameAfterCloseMs);
        this.deliver(t, other, "control", encodeFrame({ envs: [{ group: NODE_GROUP, msg: { beats: [] } }] }));
      }, 1, "net");
    }
  }

  /** Nodes in different groups cannot exchange messages (nodes in no group form one more). */
  partition(groups: number[][]): void {
    this.side = new Map();
    groups.forEach((g, i) => g.forEach((id) => this.side.set(id, i)));
  }

  heal(): void {
    this.side = new Map();
  }

  setLinkFaults(f: LinkFaults): void {
    assert(f.delayMsMin >= 0 && f.delayMsMax >= f.delayMsMin, "delays: 0 <= min <= max");
    this.links = f;
  }

  private connected(a: number, b: number): boolean {
    return (this.side.get(a) ?? -1) === (this.side.get(b) ?? -1);
  }

  /** Carries one frame from `from` to node `to`'s current incarnation, after a seeded delay. */
  carry(from: SimTransport, to: number, plane: Plane, frame: Buffer, raftOnly: boolean): void {
    this.counts.sent++;
    const receiver = this.current.get(to);
    const l = this.links;
    const down = receiver === undefined || receiver.stopped;
    const connected = this.connected(from.nodeId, to);
    if (down && connected) {
      // Nothing listens there: the sender's kernel refuses its connection, and its transport says so
      // (as the real one does on each failed reconnect). A partition, like a cut cable, tells nobody.
      this.counts.dropped++;
      this.scheduler.schedule(() => {
        if (!from.stopped) from.opts.onDisconnect?.(to);
      }, 1, "net");
      return;
    }
    if (down || !connected || this.random.float() < l.dropProbability) {
      this.counts.dropped++;
      return;
    }
    // Only frames of Raft messages are duplicated (a retransmission, which Raft must tolerate): the real
    // transport never sends a frame twice and TCP delivers once, and node-level messages (forwarded
    // requests) rely on that.
    const copies = raftOnly && this.random.float() < l.duplicateProbability ? 2 : 1;
    if (copies === 2) this.counts.duplicated++;
    for (let c = 0; c < copies; c++) {
      const delayMs = l.delayMsMin + this.random.float() * (l.delayMsMax - l.delayMsMin);
      const key = `${from.nodeId}>${to}/${plane}`;
      let atMs = this.scheduler.nowMs + delayMs;
      if (!l.reorder) atMs = Math.max(atMs, this.lastArrivalMs.get(key) ?? 0);
      this.lastArrivalMs.set(key, atMs);
      this.scheduler.schedule(() => this.deliver(from, receiver, plane, frame), atMs - this.scheduler.nowMs, "net");
    }
  }

  private deliver(from: SimTransport, receiver: SimTransport, plane: Plane, frame: Buffer): void {
    // Lost with a receiver that died, and cut by a partition that started while it travelled.
    if (receiver.stopped || this.current.get(receiver.nodeId) !== receiver || !this.connected(from.nodeId, receiver.nodeId)) {
      this.counts.dropped++;
      return;
    }
    const [payload] = new FrameDecoder().push(frame) as [{ envs: Envelope[] }];
    this.counts.delivered++;
    receiver.opts.onReceive(from.nodeId, plane, payload.envs);
  }
}
