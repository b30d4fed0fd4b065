/**
 * A deterministic simulation of a Raft cluster under faults. Everything random comes from one seed:
 * the cluster size, the configuration, the fault schedule, message delays, clients' choices. A run
 * has a chaos phase (faults on), then a healing phase in which liveness must return; safety
 * invariants are checked after every event and the clients' history is checked for linearizability
 * at the end.
 */
import { checkOperations, kvModel, operationsFromEvents } from "../check/index.js";
import {
  type Mutations,
  type NodeId,
  AssertionError,
  ConfChangeTransition,
  ConfChangeType,
  ProposalDroppedError,
  RaftNode,
  ReadOnlyOption,
  Role,
  bootstrapStorage,
} from "../raft/index.js";
import { EventQueue } from "./event-queue.js";
import { HistoryRecorder } from "./history.js";
import { InvariantChecker, SimViolation } from "./invariants.js";
import { SimNetwork } from "./network.js";
import { Rng } from "../util/rng.js";
import { type FaultProfile, FAULT_PROFILES, Nemesis, type NemesisTarget } from "./nemesis.js";
import { type SimNodeOptions, SimNode } from "./sim-node.js";
import { type Command, KvStateMachine, encodeCommand } from "./state-machine.js";

export interface SimOptions {
  seed: number;
  /** Simulated duration of the chaos phase. */
  chaosMs?: number;
  /** Simulated duration of the healing phase; liveness must return within it. */
  healMs?: number;
  /** Initial voters: 3 or 5 (0 = chosen by the seed). */
  nodes?: number;
  mutations?: Mutations;
  /** Fault profile (default: chosen by the seed). */
  profile?: FaultProfile;
  /** Keep the history even when the run passes. */
  keepHistory?: boolean;
}

export interface SimStats {
  simulatedMs: number;
  events: number;
  messagesSent: number;
  messagesDropped: number;
  operations: number;
  acknowledgedWrites: number;
  crashes: number;
  partitions: number;
  membershipChanges: number;
  leaderTransfers: number;
  snapshotsInstalled: number;
  maxTerm: number;
  finalCommit: number;
  historyVerdict: string;
  /** Simulated ms from healing until a leader had committed an entry of its own term. */
  recoveryMs: number | null;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  /** The violated rule and where, when not ok. */
  failure: string | null;
  /** Simulated time of the failure. */
  failedAtMs: number | null;
  stats: SimStats;
  history: string | null;
  /** A short description of the run's setup (for the replay message). */
  setup: string;
}

type SimEvent =
  | { kind: "deliver"; to: NodeId; msg: Parameters<SimNode["step"]>[0] }
  | { kind: "tick"; node: NodeId; incarnation: number }
  | { kind: "callback"; node: NodeId; incarnation: number; fn: () => void }
  | { kind: "client"; client: number }
  | { kind: "nemesis" }
  | { kind: "fn"; fn: () => void };

const TICK_MS = 10;
const CLIENTS = 4;
const KEYS = ["a", "b", "c", "d", "e"];
const OP_TIMEOUT_MS = 600;
const MAX_MEMBERS = 5;
/** Bound on events per run, so a livelock ends the run instead of hanging it. */
const MAX_EVENTS = 5_000_000;
/** After healing, a leader must have committed an entry of its term within this much simulated time. */
const LIVENESS_BOUND_MS = 3000;
/** Search steps the linearizability check of one run may take before it answers "unknown". */
const HISTORY_CHECK_STEPS = 20_000_000;

interface ClientState {
  id: number;
  process: number;
  generation: number;
  seq: number;
  busy: boolean;
  leaderGuess: NodeId;
  lastSeen: Map<string, string>;
}

export class Simulation {
  readonly seed: number;
  private readonly rng: Rng;
  private readonly netRng: Rng;
  private readonly nodeRng: Rng;
  private readonly clientRng: Rng;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly net: SimNetwork;
  readonly nodes = new Map<NodeId, SimNode>();
  private readonly checker = new InvariantChecker();
  private readonly history = new HistoryRecorder();
  private readonly clients: ClientState[] = [];
  private now = 0;
  private events = 0;
  private nextNodeId: number;
  private nextReq = 1;
  private readonly chaosMs: number;
  private readonly healMs: number;
  private readonly nodeOpts: SimNodeOptions;
  private readonly skew = new Map<NodeId, number>();
  private readonly stats: SimStats;
  private readonly setup: string;
  private readonly opts: SimOptions;
  private healed = false;
  private readonly nemesis: Nemesis;

  constructor(opts: SimOptions) {
    this.opts = opts;
    this.seed = opts.seed;
    this.rng = new Rng(opts.seed);
    this.netRng = this.rng.fork();
    this.nodeRng = this.rng.fork();
    this.clientRng = this.rng.fork();
    this.net = new SimNetwork(this.netRng);
    this.chaosMs = opts.chaosMs ?? 6000;
    this.healMs = opts.healMs ?? 4000;
    const size = opts.nodes !== undefined && opts.nodes > 0 ? opts.nodes : this.rng.pick([3, 3, 5]);
    this.nemesis = new Nemesis(opts.profile ?? this.rng.pick(FAULT_PROFILES));
    const lease = this.rng.chance(0.3);
    const churn = this.nemesis.profile === "leader-churn";
    this.nodeOpts = {
      raftConfig: {
        electionTicks: 10,
        heartbeatTicks: 2,
        checkQuorum: true,
        preVote: this.rng.chance(0.8),
        readOnlyOption: lease ? ReadOnlyOption.Lease : ReadOnlyOption.Safe,
        leaseClockDriftTicks: lease ? 2 : 0,
        // Under leader churn, small messages and windows stretch catch-up over many round trips, which
        // is when overlapping terms do damage.
        maxSizePerMsgBytes: churn ? this.rng.pick([1, 256]) : this.rng.pick([1, 256, 4096, 1 << 20]),
        maxInflightMsgs: churn ? this.rng.pick([1, 2, 4]) : this.rng.pick([2, 16, 256]),
        maxSnapshotChunkBytes: this.rng.pick([16, 64, 1024]),
        maxSnapshotInflightBytes: this.rng.pick([64, 4096]),
        mutations: opts.mutations ?? {},
      },
      // Power losses matter most when writes take a while to reach the disk.
      diskLatencyMs: [0, this.nemesis.profile === "power" ? this.rng.pick([8, 20]) : this.rng.pick([1, 3, 8, 20])],
      snapshotEveryEntries: this.rng.pick([8, 30, 100]),
      keepEntriesAfterSnapshot: this.rng.pick([0, 5, 20]),
    };
    const rc = this.nodeOpts.raftConfig;
    this.setup = `${this.nemesis.profile} faults, ${size} voters, preVote=${rc.preVote}, reads=${rc.readOnlyOption}, ` +
      `snapshot every ${this.nodeOpts.snapshotEveryEntries} entries, disk ≤${this.nodeOpts.diskLatencyMs[1]} ms`;
    const voters = Array.from({ length: size }, (_, i) => i + 1);
    this.nextNodeId = size + 1;
    for (const id of voters) {
      const node = this.createNode(id);
      bootstrapStorage(node.disk, RaftNode.bootstrapConfState(voters), new KvStateMachine().snapshot());
      this.startNode(node);
    }
    this.stats = {
      simulatedMs: 0, events: 0, messagesSent: 0, messagesDropped: 0, operations: 0, acknowledgedWrites: 0,
      crashes: 0, partitions: 0, membershipChanges: 0, leaderTransfers: 0, snapshotsInstalled: 0, maxTerm: 0,
      finalCommit: 0, historyVerdict: "unchecked", recoveryMs: null,
    };
    for (let c = 0; c < CLIENTS; c++) {
      this.clients.push({ id: c, process: c, generation: 0, seq: 0, busy: false, leaderGuess: 0, lastSeen: new Map() });
      this.queue.push(this.clientRng.range(0, 50), { kind: "client", client: c });
    }
    this.queue.push(this.rng.range(200, 600), { kind: "nemesis" });
  }

  // -----------------------------------------------------------------------------------------------
  // Nodes

  private createNode(id: NodeId): SimNode {
    const node = new SimNode(id, {
      now: () => this.now,
      send: (_from, msgs) => {
        for (const m of msgs) for (const d of this.net.plan(m)) this.queue.push(this.now + d, { kind: "deliver", to: m.to, msg: m });
      },
      after: (n, delayMs, fn) => this.queue.push(this.now + delayMs, { kind: "callback", node: n.id, incarnation: n.incarnation, fn }),
      onApplied: (n, e, isSnapshot) => {
        if (isSnapshot) this.stats.snapshotsInstalled++;
        this.checker.onApplied(n, e, isSnapshot);
      },
    }, this.nodeRng.fork(), this.nodeOpts);
    this.nodes.set(id, node);
    // Each node's clock runs a little fast or slow (within the lease's drift margin).
    this.skew.set(id, 1 + (this.rng.float() - 0.5) * 0.1);
    return node;
  }

  private startNode(node: SimNode): void {
    node.start();
    this.queue.push(this.now + this.tickPeriod(node.id) * (0.5 + this.rng.float()),
      { kind: "tick", node: node.id, incarnation: node.incarnation });
  }

  private tickPeriod(id: NodeId): number {
    return TICK_MS * this.skew.get(id)!;
  }

  private upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.up);
  }

  private leader(): SimNode | null {
    let best: SimNode | null = null;
    for (const n of this.nodes.values()) {
      if (n.raft?.role() === Role.Leader && (best === null || n.raft.term() > best.raft!.term())) best = n;
    }
    return best;
  }

  // -----------------------------------------------------------------------------------------------
  // Main loop

  run(): SimResult {
    const end = this.chaosMs + this.healMs;
    let failure: string | null = null;
    let failedAt: number | null = null;
    try {
      while (this.queue.size > 0 && this.queue.peekTime() <= end) {
        const ev = this.queue.pop()!;
        this.now = ev.at;
        if (!this.healed && this.now >= this.chaosMs) this.heal();
        this.dispatch(ev.event);
        this.events++;
        if (this.events > MAX_EVENTS) throw new SimViolation(`event bound: more than ${MAX_EVENTS} events`);
        this.checker.afterStep([...this.nodes.values()]);
        if (this.healed && this.stats.recoveryMs === null && this.leaderCommittedInTerm()) {
          this.stats.recoveryMs = this.now - this.chaosMs;
        }
        if (this.events % 64 === 0) this.checker.checkLogMatching([...this.nodes.values()]);
      }
      this.now = end;
      this.checker.checkLogMatching([...this.nodes.values()]);
      this.checkLiveness();
      this.checkHistory();
    } catch (e) {
      if (!(e instanceof SimViolation || e instanceof AssertionError)) throw e;
      failure = e instanceof AssertionError ? `assertion: ${e.message}` : e.message;
      failedAt = this.now;
    }
    this.finishStats();
    const keep = failure !== null || this.opts.keepHistory === true;
    return {
      seed: this.seed, ok: failure === null, failure, failedAtMs: failedAt, stats: this.stats,
      history: keep ? this.history.toJsonLines() : null, setup: this.setup,
    };
  }

  private dispatch(ev: SimEvent): void {
    switch (ev.kind) {
      case "deliver": {
        const node = this.nodes.get(ev.to);
        if (node !== undefined && node.up) node.step(ev.msg);
        return;
      }
      case "tick": {
        const node = this.nodes.get(ev.node);
        // A restarted node has a fresh tick chain; the old one ends here.
        if (node === undefined || !node.up || node.incarnation !== ev.incarnation) return;
        node.tick();
        this.queue.push(this.now + this.tickPeriod(node.id), { kind: "tick", node: node.id, incarnation: ev.incarnation });
        return;
      }
      case "callback": {
        const node = this.nodes.get(ev.node);
        if (node !== undefined && node.up && node.incarnation === ev.incarnation) ev.fn();
        return;
      }
      case "client":
        this.clientStep(this.clients[ev.client]!);
        return;
      case "nemesis":
        if (this.healed) return;
        this.nemesis.strike(this.target());
        this.queue.push(this.now + this.nemesis.nextIntervalMs(this.rng), { kind: "nemesis" });
        return;
      case "fn":
        ev.fn();
        return;
    }
  }

  // -----------------------------------------------------------------------------------------------
  // Faults

  private members(): NodeId[] {
    return [...this.nodes.values()].filter((n) => !n.removed).map((n) => n.id).sort((a, b) => a - b);
  }

  /** The nemesis' handle on the cluster. */
  private target(): NemesisTarget {
    return {
      rng: this.rng,
      net: this.net,
      now: () => this.now,
      members: () => this.members(),
      upNodes: () => this.upNodes(),
      leader: () => this.leader(),
      crash: (node, restartInMs) => {
        if (!node.up) return;
        node.crash();
        this.stats.crashes++;
        this.queue.push(this.now + restartInMs, {
          kind: "fn", fn: () => { if (!node.up && !node.removed) this.startNode(node); },
        });
      },
      at: (timeMs, fn) => this.queue.push(timeMs, { kind: "fn", fn }),
      healed: () => this.healed,
      changeMembership: () => this.changeMembership(),
      transferLeader: () => {
        const leader = this.leader();
        if (leader === null) return null;
        const voters = leader.raft!.status().config.voters.filter((v) => v !== leader.id);
        if (voters.length === 0) return null;
        leader.raft!.transferLeader(this.rng.pick(voters));
        leader.pump();
        this.stats.leaderTransfers++;
        return leader.id;
      },
      setSkew: (id, factor) => this.skew.set(id, factor),
      countPartition: () => this.stats.partitions++,
    };
  }

  private changeMembership(): void {
    const leader = this.leader();
    if (leader === null) return;
    const cs = leader.raft!.status().config;
    if (cs.votersOutgoing.length > 0) return; // joint: let it finish
    const members = [...cs.voters, ...cs.learners];
    const choice = this.rng.int(5);
    const changes: { type: ConfChangeType; nodeId: NodeId }[] = [];
    if (choice === 0 && members.length < MAX_MEMBERS) {
      const id = this.nextNodeId++;
      this.startNode(this.createNode(id));
      changes.push({ type: ConfChangeType.AddLearner, nodeId: id });
    } else if (choice === 1 && cs.learners.length > 0) {
      changes.push({ type: ConfChangeType.AddVoter, nodeId: this.rng.pick(cs.learners) });
    } else if (choice === 2 && cs.voters.length > 3) {
      changes.push({ type: ConfChangeType.AddLearner, nodeId: this.rng.pick(cs.voters) });
    } else if (choice === 3 && members.length > 3) {
      changes.push({ type: ConfChangeType.RemoveNode, nodeId: this.rng.pick(members) });
    } else if (choice === 4 && cs.learners.length > 0 && cs.voters.length >= 3) {
      // Swap a voter for a learner in one joint change.
      changes.push({ type: ConfChangeType.AddVoter, nodeId: this.rng.pick(cs.learners) });
      changes.push({ type: ConfChangeType.RemoveNode, nodeId: this.rng.pick(cs.voters) });
    }
    if (changes.length === 0) return;
    try {
      leader.raft!.proposeConfChange({ transition: ConfChangeTransition.Auto, changes });
      leader.pump();
      this.stats.membershipChanges++;
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
    }
  }

  private heal(): void {
    this.healed = true;
    this.net.heal();
    for (const id of this.nodes.keys()) this.skew.set(id, 1);
    for (const n of this.nodes.values()) if (!n.up && !n.removed) this.startNode(n);
  }

  /** Members seen in an applied configuration, with the leader's applied index at that time. */
  private readonly addedAt = new Map<NodeId, number>();

  /**
   * Members removed by an applied configuration change leave the simulation for good (ids are never
   * reused). A node counts as removed once the leader has applied past the change that added it and
   * its configuration no longer holds it.
   */
  private reapRemoved(): void {
    const leader = this.leader();
    if (leader === null || leader.confState === null) return;
    const cs = leader.confState;
    const inConfig = new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext]);
    for (const id of inConfig) if (!this.addedAt.has(id)) this.addedAt.set(id, leader.appliedIndex);
    for (const n of this.nodes.values()) {
      const added = this.addedAt.get(n.id);
      if (n.removed || inConfig.has(n.id) || added === undefined || leader.appliedIndex <= added) continue;
      n.removed = true;
      n.crash();
    }
  }

  // -----------------------------------------------------------------------------------------------
  // Clients

  private clientStep(c: ClientState): void {
    if (c.busy) return;
    if (this.now >= this.chaosMs + this.healMs - OP_TIMEOUT_MS * 2) return; // quiet end: let ops finish
    this.reapRemoved();
    const target = this.pickTarget(c);
    if (target === null) {
      this.queue.push(this.now + 20, { kind: "client", client: c.id });
      return;
    }
    c.busy = true;
    this.stats.operations++;
    const key = this.clientRng.pick(KEYS);
    const kind = this.clientRng.int(10);
    const finish = (type: "ok" | "fail" | "info", f: "read" | "write" | "cas" | "get", value: unknown) => {
      this.history.record({ process: c.process, type, f, key, value, time: this.now });
      if (type === "info") c.process = CLIENTS * ++c.generation + c.id; // Jepsen: a new process after an unknown outcome
      c.busy = false;
      this.queue.push(this.now + this.clientRng.range(5, 40), { kind: "client", client: c.id });
    };
    if (kind < 3) {
      // Linearizable read through ReadIndex.
      const ctx = `r${this.nextReq++}`;
      this.history.record({ process: c.process, type: "invoke", f: "read", key, value: null, time: this.now });
      let settled = false;
      const timer = this.timeout(() => { if (!settled) { settled = true; target.forgetRead(ctx); finish("info", "read", null); } });
      target.readIndex(ctx, key, (value) => {
        if (settled) return;
        settled = true;
        timer.cancel();
        if (value === null) finish("info", "read", null);
        else finish("ok", "read", value);
      });
      return;
    }
    const req = this.nextReq++;
    let cmd: Command;
    let f: "write" | "cas" | "get";
    let input: unknown;
    if (kind < 6) {
      const value = `${c.id}.${++c.seq}`;
      cmd = { req, op: "put", key, value };
      f = "write";
      input = value;
    } else if (kind < 9) {
      const value = `${c.id}.${++c.seq}`;
      const expected = c.lastSeen.get(key) ?? "";
      cmd = { req, op: "cas", key, expected, value };
      f = "cas";
      input = [expected, value];
    } else {
      cmd = { req, op: "get", key };
      f = "get";
      input = null;
    }
    const hf: "read" | "write" | "cas" = f === "get" ? "read" : f;
    const invoke = { process: c.process, type: "invoke" as const, f: hf, key, value: input, time: this.now };
    let settled = false;
    const timer = this.timeout(() => { if (!settled) { settled = true; target.forget(req); finish("info", hf, null); } });
    const accepted = target.propose(req, encodeCommand(cmd), (result, index) => {
      if (settled) return;
      settled = true;
      timer.cancel();
      if (result === null) {
        finish("info", hf, null);
        return;
      }
      if (f !== "get") {
        this.stats.acknowledgedWrites++;
        this.checker.onAcknowledged(index);
      }
      if (f === "cas") {
        if (result.ok) c.lastSeen.set(key, cmd.op === "cas" ? cmd.value : "");
        else c.lastSeen.set(key, result.value);
        finish(result.ok ? "ok" : "fail", "cas", input);
      } else if (f === "get") {
        c.lastSeen.set(key, result.value);
        finish("ok", "read", result.value);
      } else {
        c.lastSeen.set(key, result.value);
        finish("ok", "write", input);
      }
    });
    if (!accepted) {
      // Refused at once: it never entered any log, so it is left out of the history.
      settled = true;
      timer.cancel();
      c.leaderGuess = 0;
      c.busy = false;
      this.queue.push(this.now + this.clientRng.range(1, 15), { kind: "client", client: c.id });
      return;
    }
    this.history.record(invoke);
  }

  private timeout(fn: () => void): { cancel(): void } {
    let live = true;
    this.queue.push(this.now + OP_TIMEOUT_MS, { kind: "fn", fn: () => { if (live) fn(); } });
    return { cancel: () => { live = false; } };
  }

  private pickTarget(c: ClientState): SimNode | null {
    const guess = this.nodes.get(c.leaderGuess);
    const up = this.upNodes().filter((n) => !n.removed);
    if (up.length === 0) return null;
    // Ask a node who leads (as a redirect would), sometimes talk to a follower on purpose.
    let target = guess !== undefined && guess.up && !guess.removed ? guess : this.clientRng.pick(up);
    const lead = target.raft!.lead();
    const leadNode = this.nodes.get(lead);
    if (lead !== target.id && leadNode !== undefined && leadNode.up && this.clientRng.chance(0.8)) target = leadNode;
    c.leaderGuess = target.id;
    return target;
  }

  // -----------------------------------------------------------------------------------------------
  // End-of-run checks

  private leaderCommittedInTerm(): boolean {
    const leader = this.leader();
    if (leader === null) return false;
    const r = leader.raft!;
    return r.termAt(r.committed()) === r.term();
  }

  /** After healing: a leader committed in its term within the bound, and every member caught up. */
  private checkLiveness(): void {
    const recovery = this.stats.recoveryMs;
    if (recovery === null || recovery > LIVENESS_BOUND_MS) {
      throw new SimViolation(`liveness: no leader committed in its term within ${LIVENESS_BOUND_MS} ms of healing` +
        (recovery === null ? "" : ` (took ${recovery} ms)`));
    }
    const leader = this.leader();
    if (leader === null) throw new SimViolation(`liveness: no leader ${this.healMs} ms after healing`);
    const r = leader.raft!;
    if (r.termAt(r.committed()) !== r.term()) {
      throw new SimViolation(`liveness: leader ${leader.id} has not committed an entry of term ${r.term()} after healing`);
    }
    const cs = leader.confState ?? leader.raft!.status().config;
    const members = [...new Set([...cs.voters, ...cs.learners])];
    for (const id of members) {
      const n = this.nodes.get(id);
      if (n === undefined || !n.up) throw new SimViolation(`liveness: member ${id} is not running after healing`);
      if (n.appliedIndex < this.checker.maxAcknowledged) {
        throw new SimViolation(`acknowledged write lost: member ${id} applied ${n.appliedIndex}, ` +
          `a write was acknowledged at ${this.checker.maxAcknowledged}`);
      }
      if (n.appliedIndex < r.committed()) {
        throw new SimViolation(`liveness: member ${id} applied ${n.appliedIndex} < leader commit ${r.committed()}`);
      }
      if (n.sm.fingerprint() !== leader.sm.fingerprint() && n.appliedIndex === leader.appliedIndex) {
        throw new SimViolation(`convergence: member ${id} state differs from the leader's at the same index`);
      }
    }
  }

  private checkHistory(): void {
    const ops = operationsFromEvents(this.history.events);
    let budget = HISTORY_CHECK_STEPS;
    // A deterministic budget (not a clock): the same seed always gets the same verdict.
    const result = checkOperations(kvModel, ops, { shouldStop: () => (budget -= 65536) <= 0 });
    this.stats.historyVerdict = result.verdict;
    if (result.verdict === "not-linearizable") {
      const f = result.failure!;
      throw new SimViolation(`linearizability: the client history is not linearizable on key ${JSON.stringify(f.key)}`);
    }
  }

  private finishStats(): void {
    this.stats.simulatedMs = this.now;
    this.stats.events = this.events;
    this.stats.messagesSent = this.net.sent;
    this.stats.messagesDropped = this.net.dropped;
    let maxTerm = 0;
    let commit = 0;
    for (const n of this.nodes.values()) {
      if (n.raft === null) continue;
      maxTerm = Math.max(maxTerm, n.raft.term());
      commit = Math.max(commit, n.raft.committed());
    }
    this.stats.maxTerm = maxTerm;
    this.stats.finalCommit = commit;
  }
}

export function runSeed(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}
