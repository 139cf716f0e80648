// BullMQ's drain of N no-op jobs on the same Redis, for docs/benchmarks.md.
//
// Run through bench/bullmq.sh (which installs the packages and deletes leftover keys).
// For each concurrency in CONCURRENCIES: under a fresh key prefix, enqueue N no-op jobs with
// addBulk (chunks of BATCH, removeOnComplete and removeOnFail), then start ONE Worker with a
// no-op processor (other options at their defaults: lock renewal and stalled checks on) and time
// from its construction (start-up included, as PySaaS's is) until it has emitted 'completed' N
// times; the queue's counts are then checked to be all zero. Result lines go to stdout, nothing
// else.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { randomBytes } from "node:crypto";

const NODE_DIR = process.env.PYSAAS_BENCH_NODE;
if (!NODE_DIR) throw new Error("PYSAAS_BENCH_NODE is not set; run bench/bullmq.sh");
const req = createRequire(join(NODE_DIR, "package.json"));
const { Queue, Worker } = req("bullmq");
const { Redis } = req("ioredis");
const { version } = JSON.parse(
  readFileSync(join(NODE_DIR, "node_modules/bullmq/package.json"), "utf8"),
);
const LABEL = `bullmq ${version.split(".")[0]}`;

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const N = Number(process.env.N ?? 20000);
const CONCURRENCIES = (process.env.CONCURRENCIES ?? "50 200").trim().split(/[\s,]+/).map(Number);
const BATCH = Number(process.env.BATCH ?? 1000);
const TIMEOUT_S = Number(process.env.TIMEOUT ?? 300);
const BASE = process.env.BULLMQ_PREFIX_BASE ?? `bullmq-bench-${randomBytes(4).toString("hex")}`;
const QUEUE = "drain";

const url = new URL(REDIS_URL);
const connection = {
  host: url.hostname || "127.0.0.1",
  port: Number(url.port || 6379),
  db: Number(url.pathname.slice(1) || 0),
  username: url.username ? decodeURIComponent(url.username) : undefined,
  password: url.password ? decodeURIComponent(url.password) : undefined,
  maxRetriesPerRequest: null, // what BullMQ requires for Worker connections
};
const fmt = (n, s) => `${n} jobs in ${s.toFixed(2)} s = ${Math.round(n / s)} jobs/s`;

async function deleteKeys(prefix) {
  const redis = new Redis(connection);
  try {
    const stream = redis.scanStream({ match: `${prefix}:*`, count: 1000 });
    for await (const keys of stream) if (keys.length) await redis.unlink(...keys);
  } finally {
    redis.disconnect();
  }
}

async function once(concurrency) {
  const prefix = `${BASE}-c${concurrency}`;
  const queue = new Queue(QUEUE, { connection, prefix });
  let worker, timer;
  try {
    const opts = { removeOnComplete: true, removeOnFail: true };
    const t0 = performance.now();
    for (let off = 0; off < N; off += BATCH) {
      const n = Math.min(BATCH, N - off);
      await queue.addBulk(Array.from({ length: n }, () => ({ name: "noop", data: {}, opts })));
    }
    const enqueueS = (performance.now() - t0) / 1000;
    console.log(`bullmq enqueue: ${fmt(N, enqueueS)} (addBulk, chunks of ${BATCH})`);

    let completed = 0;
    let ok, fail;
    const allDone = new Promise((res, rej) => ((ok = res), (fail = rej)));
    timer = setTimeout(
      () => fail(new Error(`timed out after ${TIMEOUT_S} s (${completed}/${N} completed)`)),
      TIMEOUT_S * 1000,
    );
    const start = performance.now();
    worker = new Worker(QUEUE, async () => {}, { connection, prefix, concurrency });
    worker.on("completed", () => {
      if (++completed === N) ok();
    });
    worker.on("failed", (_job, err) => fail(err));
    worker.on("error", (err) => fail(err));
    await allDone;
    const drainS = (performance.now() - start) / 1000;
    await worker.close();
    worker = undefined;

    const counts = await queue.getJobCounts();
    const left = Object.entries(counts).filter(([, v]) => v !== 0);
    if (left.length) throw new Error(`jobs left after the drain: ${JSON.stringify(counts)}`);
    console.log(`${LABEL} drain: ${fmt(N, drainS)} (concurrency ${concurrency})`);
    return N / drainS;
  } finally {
    clearTimeout(timer);
    if (worker) await worker.close(true).catch((e) => console.error(e));
    await queue.obliterate({ force: true }).catch((e) => console.error(e));
    await queue.close().catch((e) => console.error(e));
    await deleteKeys(prefix);
  }
}

let best;
for (const c of CONCURRENCIES) {
  const rate = await once(c);
  if (!best || rate > best.rate) best = { rate, c };
}
console.log(`${LABEL} drain best: ${Math.round(best.rate)} jobs/s (concurrency ${best.c})`);
