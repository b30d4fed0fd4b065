/** The `shoal` command line. */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from "commander";

// Each command's module is loaded only when that command runs: `check-history` should not pay for
// loading the HTTP server and the storage engine.

const env = (name: string, dflt: string) => process.env[name] ?? dflt;

// Input is checked while commander parses, so a bad value stops the command before it loads anything
// or calls a server; commander names the argument in front of these messages.

/**
 * The server's ID_PATTERN (src/api/server.ts), repeated: importing the server module would load the
 * HTTP server for every `shoal get`. cli.test.ts keeps the two equal.
 */
export const RECORD_ID = /^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,256}$/;
const ID_RULE = "1-256 characters of A-Z a-z 0-9 . _ ~ : @ ! $ & ' ( ) * + , ; = -";

function recordId(v: string): string {
  if (!RECORD_ID.test(v)) throw new InvalidArgumentError(`A record id is ${ID_RULE}`);
  return v;
}

function jsonValue(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch (e) {
    throw new InvalidArgumentError(`Expected JSON (${(e as Error).message}); quote it for the shell, e.g. '{"a": 1}'`);
  }
}

/** A decimal integer of at least `min`: digits only, so "1e3", "0x10" and "1.0" are refused, not reinterpreted. */
const integerAtLeast = (min: number) => (v: string): number => {
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`Expected ${min === 0 ? "a non-negative" : "a positive"} integer`);
  return n;
};
const positiveInt = integerAtLeast(1);
const nonNegativeInt = integerAtLeast(0);

function httpUrl(v: string): string {
  const protocol = URL.canParse(v) ? new URL(v).protocol : null;
  if (protocol !== "http:" && protocol !== "https:") throw new InvalidArgumentError("Expected an http(s) URL, e.g. http://127.0.0.1:7400");
  return v;
}

/** One NAME=NUMBER of `config set`, added to those before it (commander folds a variadic argument through its parser). */
function setting(v: string, before: Record<string, number> = {}): Record<string, number> {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)=(\S+)$/.exec(v);
  const n = Number(m?.[2]);
  if (m === null || !Number.isFinite(n)) throw new InvalidArgumentError("Expected NAME=NUMBER: NAME an identifier (e.g. replicationFactor), NUMBER a finite number");
  return { ...before, [m[1]!]: n };
}

const RECORD_ID_HELP = `record id: ${ID_RULE}`;
const positive = (what: string, listedBy: string) => `${what}: a positive integer, as \`shoal ${listedBy}\` lists`;
const NODE_ID = positive("node id", "node ls");
const SHARD_ID = positive("shard id", "shard ls");

const endpoint = () => new Option("--endpoint <url>", "a node's HTTP API: an http(s) URL").env("SHOAL_ENDPOINT").default("http://127.0.0.1:7400").argParser(httpUrl);
const json = () => new Option("--json", "print the server's JSON answer (for scripts)");
const nodeOption = (flags: string, what: string) => new Option(flags, `${what}; ${NODE_ID}`).argParser(positiveInt);
const writeModeOption = () => new Option("--write-mode <mode>", "sync: answered once a quorum holds the write; async: once the shard leader's log holds it (a failover can lose it: README, Write modes); default: the collection's").choices(["sync", "async"]);
const ifVersion = (what: string) => new Option("--if-version <n>", `compare-and-set: ${what} only if the record is at this version (a non-negative integer${what === "write" ? "; 0: only if there is none" : ""})`)
  .argParser(nonNegativeInt);

/** The whole command tree, built without parsing anything (tests walk it). */
export function buildProgram(): Command {
  const program = new Command();
  // Thrown instead of exiting, so that every usage error leaves with code 2 (see runCli).
  program.exitOverride();
  program.name("shoal").description("Shoal: a distributed, sharded, replicated database").version("0.1.0", "-V, --version", "print shoal's version");
  addToolCommands(program);
  addNodeCommands(program);
  addRecordCommands(program);
  addQueryCommands(program);
  addClusterCommands(program);
  return program;
}

function addToolCommands(program: Command): void {
  program
    .command("check-history")
    .description("check whether a recorded history is linearizable (exit 0 yes, 1 no, 2 unknown or bad input)")
    .argument("<file>", "history: Shoal JSON lines, a Jepsen log, or a Jepsen EDN history")
    .addOption(new Option("--model <model>", "sequential model (default: kv for EDN, else register)").choices(["register", "kv"]))
    .addOption(new Option("--format <format>", "input format (default: detected)").choices(["jsonl", "jepsen-log", "edn"]))
    .option("--timeout <seconds>", "give up with verdict unknown after this many seconds", "60")
    .action(async (file: string, opts) => {
      const { checkHistoryCommand } = await import("./check-history.js");
      process.exitCode = checkHistoryCommand(file, opts);
    });

  program
    .command("sim")
    .description("run the deterministic cluster simulator over a range of seeds")
    .option("--seeds <n>", "number of seeds to run", "20")
    .option("--first-seed <s>", "first seed", "1")
    .option("--steps <n>", "simulated milliseconds per run (node world: of clients and faults, default 4000, then healing)", "20000")
    .option("--nodes <n>", "cluster size (raft world: 3 or 5; node world: 3 to 5; 0 = chosen by seed)", "0")
    .option("--mutation <name>", "switch on a deliberate bug, to show the checks catch it (raft world: commit-previous-term, ack-before-persist, double-vote, read-without-quorum; node world: split-restarts-versions, gateway-skips-epoch, ack-before-apply, merge-drops-last-batch)")
    .addOption(new Option("--profile <profile>", "fault profile (default: chosen by each seed)").choices(["mixed", "leader-churn", "power"]))
    .option("--history-dir <dir>", "write each run's client history (JSON lines) here (raft world)")
    .addOption(new Option("--world <world>", "raft: Raft groups alone (the core); node: whole nodes (multi-raft, gateway, placement) on simulated hosts").choices(["raft", "node"]).default("raft"))
    .option("-v, --verbose", "print a line per seed")
    .action(async (opts) => {
      if (opts.world === "node") {
        const { nodeWorldCommand } = await import("./sim-world.js");
        process.exitCode = await nodeWorldCommand(opts);
        return;
      }
      const { simCommand } = await import("./sim.js");
      process.exitCode = await simCommand(opts);
    });
}

function addNodeCommands(program: Command): void {
  program
    .command("start")
    .description("run a Shoal node (with no flags: a single-node cluster, data in ./shoal-data, HTTP on 127.0.0.1:7400")
    .option("--id <n>", "this node's id, unique in the cluster [env SHOAL_ID]", env("SHOAL_ID", "1"))
    .option("--data-dir <dir>", "where the node keeps its log and state [env SHOAL_DATA_DIR]", env("SHOAL_DATA_DIR", "./shoal-data"))
    .option("--http <host:port>", "address of the public HTTP API [env SHOAL_HTTP]", env("SHOAL_HTTP", "127.0.0.1:7400"))
    .option("--listen <host:port>", "address for other nodes (Raft traffic) [env SHOAL_LISTEN]", env("SHOAL_LISTEN", "127.0.0.1:7500"))
    .option("--advertise <host:port>", "address other nodes should use, if not --listen [env SHOAL_ADVERTISE]", process.env.SHOAL_ADVERTISE)
    .option("--advertise-http <host:port>", "HTTP address clients and other nodes should use, if not --http (say when --http is 0.0.0.0:PORT) [env SHOAL_ADVERTISE_HTTP]", process.env.SHOAL_ADVERTISE_HTTP)
    .option("--peers <list>", "the other members: ID=HOST:PORT,… (empty: single node) [env SHOAL_PEERS]", env("SHOAL_PEERS", ""))
    .option("--shards <n>", "shards of the default collection (1..16384); fixed for the cluster's life [env SHOAL_SHARDS]", env("SHOAL_SHARDS", "4"))
    .option("--max-payload-bytes <n>", "largest accepted request body; larger ones get 413 payload_too_large [env SHOAL_MAX_PAYLOAD_BYTES]", env("SHOAL_MAX_PAYLOAD_BYTES", String(1 << 20)))
    .option("--max-batch-bytes <n>", "largest accepted body of a batch upsert (POST /v1/collections/C/records); larger ones get 413 payload_too_large [env SHOAL_MAX_BATCH_BYTES]", env("SHOAL_MAX_BATCH_BYTES", String(32 << 20)))
    .option("--index-niceness <n>", "nice value (0..19) of the thread that builds the vector and payload indexes: graph building yields the CPU to writes and reads, and catches up with what is left (Linux; 0: the node's own priority) [env SHOAL_INDEX_NICENESS]", env("SHOAL_INDEX_NICENESS", "10"))
    .option("--index-threads <n>", "worker threads that hold this node's vector and payload indexes (1..64; default one per four cores, 1 to 4): a shard's index lives in one of them, so a search's shards are searched in parallel [env SHOAL_INDEX_THREADS]", process.env.SHOAL_INDEX_THREADS)
    .option("--max-json-depth <n>", "deepest nesting of arrays and objects in a request body; deeper ones get 400 limit_exceeded [env SHOAL_MAX_JSON_DEPTH]", env("SHOAL_MAX_JSON_DEPTH", "32"))
    .option("--max-json-fields <n>", "object keys plus array elements in one request body; more get 400 limit_exceeded [env SHOAL_MAX_JSON_FIELDS]", env("SHOAL_MAX_JSON_FIELDS", "10000"))
    .option("--max-key-length <n>", "longest object key in a request body, in characters; longer ones get 400 limit_exceeded [env SHOAL_MAX_KEY_LENGTH]", env("SHOAL_MAX_KEY_LENGTH", "1024"))
    .option("--compact-after-entries <n>", "compact a shard's log after this many applied entries (default 10000) [env SHOAL_COMPACT_AFTER_ENTRIES]", process.env.SHOAL_COMPACT_AFTER_ENTRIES)
    .addOption(new Option("--log-level <level>", "least severe log lines written (debug shows Raft and transport events) [env SHOAL_LOG_LEVEL]")
      .choices(["debug", "info", "warn", "error"]).default(env("SHOAL_LOG_LEVEL", "info")))
    .option("--otlp-endpoint <url>", "send OpenTelemetry spans of requests (gateway, forward, propose, commit, apply, search per shard) to this OTLP/HTTP collector, e.g. http://127.0.0.1:4318 (/v1/traces is added); tracing is off without it [env OTEL_EXPORTER_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as the full URL]")
    .option("--trace-sample-ratio <r>", "share of requests traced when the client sent no trace context, 0 to 1 (a client's sampled traceparent is always followed); lower it under heavy load [env SHOAL_TRACE_SAMPLE_RATIO]", env("SHOAL_TRACE_SAMPLE_RATIO", "1"))
    .option("--join <url>", "join the running cluster of this member's HTTP API (the cluster assigns the id; --id, --peers and --shards are then ignored) [env SHOAL_JOIN]", process.env.SHOAL_JOIN)
    .option("--labels <list>", "failure-domain labels: zone=…,rack=…,host=… [env SHOAL_LABELS]", process.env.SHOAL_LABELS)
    .addOption(new Option("--role <role>", "standard (may vote in the metadata group), analytics (a learner forever, serves reads), standby [env SHOAL_ROLE]")
      .choices(["standard", "analytics", "standby"]).default(env("SHOAL_ROLE", "standard")))
    .action(async (opts) => {
      // startCommand only returns on failure (a running node exits through its signal handlers).
      const { startCommand } = await import("./start.js");
      process.exit(await startCommand(opts));
    });

  program
    .command("demo")
    .description("start a local cluster of node processes on loopback; Ctrl-C stops them all")
    .option("--nodes <n>", "number of nodes, 1 to 9", "3")
    .option("--http-port <port>", "HTTP port of node 1 (node i uses port + i - 1)", "7400")
    .option("--peer-port <port>", "peer port of node 1 (node i uses port + i - 1)", "7500")
    .option("--shards <n>", "shards of the default collection (1..16384)", "4")
    .option("--data-dir <dir>", "where the nodes keep their data and logs", "./shoal-demo")
    .option("--fresh", "delete the demo's data dir and found a new cluster (default: resume the cluster found there)")
    .action(async (opts) => {
      const { demoCommand } = await import("./demo.js");
      process.exitCode = await demoCommand(opts);
    });
}

/** Writes carry an idempotency key, so the CLI's own retries (and a person's) never apply a write twice. */
const idempotencyKey = () => new Option("--idempotency-key <key>",
  "the write's idempotency key (1-255 printable ASCII characters; default: a new random key). The CLI retries a write whose outcome is unknown or that was refused as busy, with the same key: the node answers the first outcome instead of applying it again. Give the key printed after a failure to retry by hand")
  .argParser((v: string) => {
    if (!/^[\x21-\x7e]{1,255}$/.test(v)) throw new InvalidArgumentError("1-255 printable ASCII characters, no spaces");
    return v;
  });

function addRecordCommands(program: Command): void {
  const id = () => new Argument("<id>", RECORD_ID_HELP).argParser(recordId);
  program.command("put").description("create or replace a record; prints its new version")
    .addArgument(id()).addArgument(new Argument("<payload>", "the record's payload: any JSON value, e.g. '{\"name\": \"ada\"}'").argParser(jsonValue))
    .addOption(ifVersion("write")).addOption(idempotencyKey()).addOption(writeModeOption()).addOption(json()).addOption(endpoint())
    .action(async (id: string, payload: unknown, opts) => { process.exitCode = await (await import("./client.js")).putCommand(id, payload, opts); });
  program.command("get").description("read a record: its id, payload and version").addArgument(id())
    .addOption(new Option("--consistency <level>", "linearizable: confirmed by the shard's leader; bounded: a replica known to miss no write older than --max-staleness-ms; eventual: this node's replica, possibly stale (default: linearizable)")
      .choices(["linearizable", "bounded", "eventual"]))
    .addOption(new Option("--max-staleness-ms <ms>", "with --consistency bounded: how stale the answer may be (default 1000)").argParser(nonNegativeInt))
    .addOption(json()).addOption(endpoint())
    .action(async (id: string, opts) => { process.exitCode = await (await import("./client.js")).getCommand(id, opts); });
  program.command("del").description("delete a record (deleting one that does not exist succeeds and says so)").addArgument(id())
    .addOption(ifVersion("delete")).addOption(idempotencyKey()).addOption(writeModeOption()).addOption(json()).addOption(endpoint())
    .action(async (id: string, opts) => { process.exitCode = await (await import("./client.js")).delCommand(id, opts); });
}

function addQueryCommands(program: Command): void {
  const collection = () => new Argument("<collection>", "the collection's name");
  program.command("upsert").description("load records into a collection in batches (one proposal per shard per batch), with progress; exit 1 if any record was not written")
    .addArgument(collection())
    .addOption(new Option("--file <path>", "JSON lines, one {\"id\", \"payload\", \"vector\"?} per line; - for standard input").makeOptionMandatory())
    .addOption(new Option("--batch <n>", "records per batch (1-1000)").argParser((v: string) => {
      const n = positiveInt(v);
      if (n > 1000) throw new InvalidArgumentError("At most 1000 records per batch");
      return n;
    }).default(500))
    .addOption(endpoint())
    .action(async (c: string, opts) => { process.exitCode = await (await import("./records-client.js")).upsertCommand(c, opts); });
  program.command("search").description("the records nearest a vector, with an optional filter (best first; score: similarity for cosine and dot, distance for l2)")
    .addArgument(collection())
    .addOption(new Option("--vector <json>", "the query, a JSON list of `dim` numbers, e.g. '[0.1, 0.2]'").makeOptionMandatory())
    .addOption(new Option("-k <n>", "neighbours to return (1-1000; default 10)").argParser(positiveInt))
    .addOption(new Option("--ef <n>", "the graph's search breadth (at least k): larger finds more of the true neighbours, slower").argParser(positiveInt))
    .addOption(new Option("--filter <json>", "a filter, e.g. '{\"must\": [{\"key\": \"color\", \"match\": \"red\"}]}' (README, Filters)"))
    .addOption(new Option("--exact", "brute force over every record (exact neighbours, slower)"))
    .addOption(new Option("--consistency <level>", "linearizable (default: each shard's leader, after a ReadIndex round) or eventual (any replica, now)").choices(["linearizable", "eventual"]))
    .addOption(new Option("--allow-partial", "answer with the shards that answered in time, naming the rest"))
    .addOption(new Option("--timeout-ms <ms>", "past it: fail, or a partial answer with --allow-partial (default 5000)").argParser(positiveInt))
    .addOption(json()).addOption(endpoint())
    .action(async (c: string, opts) => { process.exitCode = await (await import("./records-client.js")).searchCommand(c, opts); });
  program.command("count").description("records of a collection satisfying a filter (all without one)").addArgument(collection())
    .addOption(new Option("--filter <json>", "a filter (README, Filters)"))
    .addOption(json()).addOption(endpoint())
    .action(async (c: string, opts) => { process.exitCode = await (await import("./records-client.js")).countCommand(c, opts); });
}

function addClusterCommands(program: Command): void {
  program.command("status").description("a node's view of the shards it holds: role, leader, term, commit and applied index, voters")
    .addOption(json()).addOption(endpoint())
    .action(async (opts) => { process.exitCode = await (await import("./client.js")).statusCommand(opts); });
  addNodeAdmin(program.command("node").description("the cluster's nodes"));
  addConfig(program.command("config").description("cluster-wide settings, versioned in the metadata group"));
  addShardAdmin(program.command("shard").description("the shard map"));
  addCollections(program.command("collection").description("collections: their shards, replicas, vector schema and payload indexes"));
  addOperators(program.command("operator").description("the placement driver's operators (replica moves, leader transfers, splits, merges)"));
  program.command("diagnose").description("collect every node's status, metrics and recent logs and the cluster's map, operators, alerts, settings history and collections into one archive (tar.gz)")
    .requiredOption("--out <file>", "the archive to write, e.g. shoal-diagnose.tar.gz").addOption(endpoint())
    .action(async (opts: { out: string; endpoint: string }) => { process.exitCode = await (await import("./diagnose.js")).diagnoseCommand(opts); });
  program.command("alerts").description("the placement driver's alerts (dead nodes, stale learners, removals)").addOption(json()).addOption(endpoint())
    .action(async (opts) => { process.exitCode = await (await import("./cluster-client.js")).alertsCommand(opts); });
  program.command("watch").description("stream node and shard changes as JSON lines (server-sent events) until interrupted").addOption(endpoint())
    .action(async (opts) => { process.exitCode = await (await import("./cluster-client.js")).watchCommand(opts); });
}

function addNodeAdmin(nodeCmd: Command): void {
  const nodeId = () => new Argument("<id>", NODE_ID).argParser(positiveInt);
  nodeCmd.command("ls").description("list the nodes the metadata group records").addOption(json()).addOption(endpoint())
    .action(async (opts) => { process.exitCode = await (await import("./client.js")).nodeListCommand(opts); });
  for (const [action, what] of [["drain", "drain a node: no new replicas, its replicas move away (leaders first); it serves reads meanwhile"],
    ["remove", "remove a node from the cluster (refused while it holds replicas: drain it first)"]] as const) {
    nodeCmd.command(action).description(what).addArgument(nodeId()).addOption(endpoint())
      .action(async (id: number, opts) => { process.exitCode = await (await import("./client.js")).nodeActionCommand(action, id, opts); });
  }
  nodeCmd.command("promote").description("promote a caught-up metadata learner to voter (voters stay odd: name a partner with --with)").addArgument(nodeId())
    .addOption(nodeOption("--with <id>", "a second learner promoted together (joint consensus)")).addOption(endpoint())
    .action(async (id: number, opts) => { process.exitCode = await (await import("./cluster-client.js")).promoteCommand(id, opts); });
}

function addConfig(configCmd: Command): void {
  configCmd.command("get").description("the settings in force").addOption(json()).addOption(endpoint())
    .action(async (opts) => { process.exitCode = await (await import("./client.js")).configGetCommand(opts); });
  configCmd.command("history").description("kept versions, oldest first").addOption(json()).addOption(endpoint())
    .action(async (opts) => { process.exitCode = await (await import("./client.js")).configHistoryCommand(opts); });
  configCmd.command("set").description("change settings, validated by the cluster before they apply (every problem named)")
    .addArgument(new Argument("<assignments...>", "NAME=NUMBER …: a setting's name (e.g. replicationFactor, see `shoal config get`) and a finite number").argParser(setting))
    .option("--note <text>", "what the change is for, kept with the version").addOption(endpoint())
    .action(async (settings: Record<string, number>, opts) => { process.exitCode = await (await import("./client.js")).configSetCommand(settings, opts); });
  configCmd.command("rollback").description("go back to a kept version (recorded as a new version)")
    .addArgument(new Argument("<version>", positive("the version to restore", "config history")).argParser(positiveInt)).addOption(endpoint())
    .action(async (version: number, opts) => { process.exitCode = await (await import("./client.js")).configRollbackCommand(version, opts); });
}

/** The server's bound on a wait (PLACEMENT_WAIT_MS_MAX in node/placement-driver.ts), repeated so the CLI need not load the node. */
const WAIT_MS_MAX = 240_000;
const WAIT_MS_DEFAULT = "120000";

/** How long an operator asked by hand may wait for the operators running on its shard: a number of ms, or the default. */
const waitOption = () => new Option("--wait [ms]",
  `if another operator runs on the shard, wait for it to end (showing its progress), up to this many ms (default ${WAIT_MS_DEFAULT}, at most ${WAIT_MS_MAX}), instead of being refused with shard_busy`)
  .preset(WAIT_MS_DEFAULT).argParser((v: string) => {
    const n = nonNegativeInt(v);
    if (n > WAIT_MS_MAX) throw new InvalidArgumentError(`At most ${WAIT_MS_MAX} ms`);
    return n;
  });

/** A `FIELD=TYPE` payload index, gathered over repeated --index options. */
function payloadIndex(v: string, acc: Record<string, string> = {}): Record<string, string> {
  const m = /^([^=]+)=(keyword|integer|float|bool)$/.exec(v);
  if (m === null) throw new InvalidArgumentError("FIELD=TYPE, the type one of keyword, integer, float, bool");
  return { ...acc, [m[1]!]: m[2]! };
}

function addCollections(collectionCmd: Command): void {
  const name = () => new Argument("<name>", "the collection's name: 1-63 characters of a-z, 0-9, '_' and '-'");
  collectionCmd.command("create").description("create a collection: its shards are born on their voters, placed evenly; prints them once led")
    .addArgument(name())
    .addOption(new Option("--shards <n>", "shards (1-1024; default 4, or for a range collection one more than its split points)").argParser(positiveInt))
    .addOption(new Option("--replication-factor <n>", "replicas per shard (1-7; default 3)").argParser(positiveInt))
    .addOption(new Option("--partitioning <how>", "hash: shards own ranges of the ids' hash (default); range: ranges of the ids themselves, so an ordered scan asks only the shards it reaches").choices(["hash", "range"]))
    .addOption(new Option("--split-points <ids>", "a range collection's initial shard boundaries: comma-separated ids, sorted (default: one shard, split at its middle id as it grows)")
      .argParser((v: string) => v.split(",")))
    .addOption(new Option("--dim <n>", "vector dimension (1-4096): the collection takes a vector per record").argParser(positiveInt))
    .addOption(new Option("--metric <metric>", "vector similarity").choices(["cosine", "dot", "l2"]))
    .addOption(new Option("--storage <type>", "how vectors are stored (default f32)").choices(["f32", "f16", "i8"]))
    .addOption(new Option("--index <field=type>", "a payload index (repeatable): a dotted field path and keyword, integer, float or bool").argParser(payloadIndex))
    .addOption(new Option("--ttl-ms <ms>", "records expire this long after their last write (at least 1000): hidden from reads at once, deleted by the shards' leaders soon after").argParser(positiveInt))
    .addOption(new Option("--write-mode <mode>", "how its single-record writes are acknowledged unless a request says: sync (default: once a quorum holds them) or async (once the shard leader's log holds them; a failover can lose them: README, Write modes)").choices(["sync", "async"]))
    .addOption(json()).addOption(endpoint())
    .action(async (n: string, opts) => { process.exitCode = await (await import("./collection-client.js")).collectionCreateCommand(n, opts); });
  collectionCmd.command("ls").description("list the collections").addOption(json()).addOption(endpoint())
    .action(async (opts) => { process.exitCode = await (await import("./collection-client.js")).collectionListCommand(opts); });
  collectionCmd.command("get").description("one collection as JSON").addArgument(name()).addOption(endpoint())
    .action(async (n: string, opts) => { process.exitCode = await (await import("./collection-client.js")).collectionGetCommand(n, opts); });
  collectionCmd.command("update").description("change the replicas each shard keeps (the placement driver adds or removes them)").addArgument(name())
    .addOption(new Option("--replication-factor <n>", "replicas per shard (1-7)").argParser(positiveInt).makeOptionMandatory()).addOption(endpoint())
    .action(async (n: string, opts) => { process.exitCode = await (await import("./collection-client.js")).collectionUpdateCommand(n, opts); });
  collectionCmd.command("drop").description("drop a collection: its shards, records and indexes go (the default collection cannot be dropped)").addArgument(name())
    .addOption(new Option("--yes", "confirm: nothing of the collection is kept").makeOptionMandatory()).addOption(endpoint())
    .action(async (n: string, opts) => { process.exitCode = await (await import("./collection-client.js")).collectionDropCommand(n, opts); });
}

function addShardAdmin(shardCmd: Command): void {
  const shardId = () => new Argument("<shard>", SHARD_ID).argParser(positiveInt);
  shardCmd.command("ls").description("list the shards: range (of hashes, or of ids in a range collection), epoch, replicas").addOption(json()).addOption(endpoint())
    .action(async (opts) => { process.exitCode = await (await import("./client.js")).shardListCommand(opts); });
  shardCmd.command("move").description("move a replica of a shard to another node (the placement driver runs it as an operator)").addArgument(shardId())
    .addOption(nodeOption("--from <node>", "the node holding the replica").makeOptionMandatory())
    .addOption(nodeOption("--to <node>", "a ready node not holding one").makeOptionMandatory()).addOption(waitOption()).addOption(json()).addOption(endpoint())
    .action(async (shard: number, opts) => { process.exitCode = await (await import("./cluster-client.js")).shardMoveCommand(shard, opts); });
  shardCmd.command("transfer-leader").description("move a shard's leadership to another of its voters").addArgument(shardId())
    .addOption(nodeOption("--to <node>", "a voter of the shard").makeOptionMandatory()).addOption(waitOption()).addOption(json()).addOption(endpoint())
    .action(async (shard: number, opts) => { process.exitCode = await (await import("./cluster-client.js")).transferLeaderCommand(shard, opts); });
  shardCmd.command("split").description("split a shard in two: the upper part of its range becomes a new shard on the same replicas; prints the new shard's id and both ranges").addArgument(shardId())
    .addOption(new Option("--at <hash>", "where to cut a hash collection's shard: a positive 32-bit hash inside its range (default: its middle)").argParser(positiveInt).conflicts("atId"))
    .addOption(new Option("--at-id <id>", "where to cut a range collection's shard: an id inside its range, which starts the new shard (default: the middle id of its records)"))
    .addOption(waitOption()).addOption(json()).addOption(endpoint())
    .action(async (shard: number, opts) => { process.exitCode = await (await import("./cluster-client.js")).splitCommand(shard, opts); });
  shardCmd.command("merge").description("merge a small shard into its lower neighbour (it freezes; its records move through the neighbour's log); prints the shard retired and the one surviving")
    .addArgument(shardId()).addOption(waitOption()).addOption(json()).addOption(endpoint())
    .action(async (shard: number, opts) => { process.exitCode = await (await import("./cluster-client.js")).mergeCommand(shard, opts); });
}

function addOperators(operatorCmd: Command): void {
  operatorCmd.command("ls").description("list operators, newest first, with their steps (✓ done, > current)")
    .option("--running", "only running ones").addOption(json()).addOption(endpoint())
    .action(async (opts) => { process.exitCode = await (await import("./cluster-client.js")).operatorListCommand(opts); });
  operatorCmd.command("cancel").description("cancel a running operator (finished steps stand)")
    .addArgument(new Argument("<id>", positive("operator id", "operator ls")).argParser(positiveInt)).addOption(endpoint())
    .action(async (id: number, opts) => { process.exitCode = await (await import("./cluster-client.js")).operatorCancelCommand(id, opts); });
}

/**
 * Whether this process was started to run the CLI rather than to import buildProgram (a test):
 * bin/shoal.js imports this module, so argv[1] is the launcher (through any npm link), or this file run directly.
 */
function launchedAsCli(): boolean {
  const started = process.argv[1];
  if (started === undefined) return false;
  const entries = [fileURLToPath(import.meta.url), fileURLToPath(new URL("../../../bin/shoal.js", import.meta.url))];
  try {
    return entries.includes(realpathSync(started));
  } catch {
    return false;
  }
}

async function runCli(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    // Commander has printed its message (or the help) already; any usage error exits 2, like a bad value.
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    console.error(`shoal: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}

if (launchedAsCli()) await runCli(process.argv);
