/**
 * Throughput of the pure Raft core: a 3-voter cluster in one process, MemoryStorage, instant delivery,
 * 100-byte payloads, closed-loop proposers (each waits for its proposal to be applied at the leader
 * before proposing again). With batching, every proposal pending in a loop turn goes into one
 * propose() call and one Ready cycle; without, each proposal gets a Ready cycle of its own.
 *
 * Reference, measured in the same run: the same closed loop over primary-backup replication into the
 * same in-memory logs without consensus — what replicating the bytes costs before Raft adds anything.
 *
 *   npm run bench:core [-- --seconds 2]
 */
import { MemoryStorage, RaftNode, type Message, type Ready, bootstrapStorage } from "../src/raft/index.js";
import { Rng } from "../src/util/rng.js";

const args = process.argv.slice(2);
const secondsArg = args.indexOf("--seconds");
const SECONDS = secondsArg >= 0 ? Number(args[secondsArg + 1]) : 1.5;
const PAYLOAD_BYTES = 100;
const IDS = [1, 2, 3];

interface Replica {
  node: RaftNode;
  storage: MemoryStorage;
}

function makeCluster(): Map<number, Replica> {
  const rng = new Rng(1);
  const replicas = new Map<number, Replica>();
  for (const id of IDS) {
    const storage = new MemoryStorage();
    bootstrapStorage(storage, RaftNode.bootstrapConfState(IDS));
    const node = new RaftNode({
      id, storage, electionTicks: 10, heartbeatTicks: 1, random: rng.asRandomFn(),
      maxInflightMsgs: 4096, maxSizePerMsgBytes: 4 << 20, maxUncommittedEntriesSizeBytes: 1 << 30,
    });
    replicas.set(id, { node, storage });
  }
  return replicas;
}

/** Runs one closed-loop configuration; returns committed proposals per second. */
function runRaft(concurrency: number, batching: boolean): number {
  const cluster = makeCluster();
  const inbox: Message[] = [];
  let applied = 0;
  const handle = (r: Replica, rd: Ready, isLeader: boolean) => {
    for (const m of rd.messages) inbox.push(m);
    if (rd.entries.length > 0) r.storage.append(rd.entries);
    if (rd.hardState !== null) r.storage.setHardState(rd.hardState);
    for (const m of rd.messagesAfterPersist) inbox.push(m);
    if (isLeader) for (const e of rd.committedEntries) if (e.data.byteLength > 0) applied++;
    r.node.advance();
  };
  const cycle = () => {
    for (let rounds = 0; rounds < 8; rounds++) {
      let moved = false;
      for (const [id, r] of cluster) {
        if (r.node.hasReady()) {
          handle(r, r.node.ready(), id === 1);
          moved = true;
        }
      }
      while (inbox.length > 0) {
        const batch = inbox.splice(0, inbox.length);
        for (const m of batch) cluster.get(m.to)!.node.step(m);
        moved = true;
      }
      if (!moved) return;
    }
  };
  const leader = cluster.get(1)!.node;
  leader.campaign();
  for (let i = 0; i < 20; i++) cycle();
  if (leader.status().role !== "leader") throw new Error("bench: node 1 did not become leader");

  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
  let outstanding = 0;
  let completedBefore = 0;
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  let committed = 0;
  while (performance.now() < deadline) {
    // Proposers whose previous proposal was applied propose again.
    const freed = applied - completedBefore;
    completedBefore = applied;
    outstanding -= freed;
    const want = concurrency - outstanding;
    if (want > 0) {
      if (batching) {
        leader.propose(...Array.from({ length: want }, () => payload));
        cycle();
      } else {
        for (let i = 0; i < want; i++) {
          leader.propose(payload);
          cycle();
        }
      }
      outstanding += want;
    } else {
      cycle();
    }
    committed = applied;
  }
  const elapsed = (performance.now() - started) / 1000;
  return committed / elapsed;
}

/**
 * The reference: primary-backup replication over the same MemoryStorage and message arrays, with no
 * consensus (no terms, no progress tracking, no Ready). The leader appends, sends the entries to both
 * backups, which append and acknowledge; an entry is applied once one backup acknowledged it.
 */
function runReference(concurrency: number, batching: boolean): number {
  const stores = IDS.map(() => new MemoryStorage());
  type Msg = { to: number; entries: import("../src/raft/index.js").Entry[]; ack: number };
  const inbox: Msg[] = [];
  let last = 0;
  let committed = 0;
  let applied = 0;
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
  const proposeBatch = (n: number) => {
    const entries = Array.from({ length: n }, () => ({ term: 1, index: ++last, type: 0, data: payload }));
    stores[0]!.append(entries);
    inbox.push({ to: 1, entries, ack: 0 }, { to: 2, entries, ack: 0 });
  };
  const deliver = () => {
    while (inbox.length > 0) {
      for (const m of inbox.splice(0, inbox.length)) {
        if (m.to === 0) {
          if (m.ack > committed) {
            applied += m.ack - committed;
            committed = m.ack;
          }
        } else {
          stores[m.to]!.append(m.entries);
          inbox.push({ to: 0, entries: [], ack: m.entries[m.entries.length - 1]!.index });
        }
      }
    }
  };
  let outstanding = 0;
  let completedBefore = 0;
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  while (performance.now() < deadline) {
    outstanding -= applied - completedBefore;
    completedBefore = applied;
    const want = concurrency - outstanding;
    if (batching) {
      proposeBatch(want);
      deliver();
    } else {
      for (let i = 0; i < want; i++) {
        proposeBatch(1);
        deliver();
      }
    }
    outstanding += want;
    if (last > 1_000_000) for (const st of stores) st.compact(st.lastIndex());
  }
  return applied / ((performance.now() - started) / 1000);
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
console.log(`Raft core, 3 voters in one process, ${PAYLOAD_BYTES}-byte payloads, ${SECONDS} s per row (node ${process.version})`);
console.log("");
console.log("| proposers | batching | Raft: committed proposals/s | reference: primary-backup/s | Raft / reference |");
console.log("|---:|:---:|---:|---:|---:|");
const results: { c: number; b: boolean; rate: number }[] = [];
for (const c of [1, 16, 256]) {
  for (const b of [false, true]) {
    const ref = runReference(c, b);
    const rate = runRaft(c, b);
    results.push({ c, b, rate });
    console.log(`| ${c} | ${b ? "on" : "off"} | ${fmt(rate)} | ${fmt(ref)} | ${(rate / ref).toFixed(3)} |`);
  }
}
const best = Math.max(...results.filter((r) => r.b).map((r) => r.rate));
console.log("");
console.log(`best with batching: ${fmt(best)} committed proposals/s; target >= 200,000: ${best >= 200_000 ? "met" : "NOT met"}`);
