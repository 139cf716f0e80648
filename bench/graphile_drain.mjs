// graphile-worker's drain of N no-op jobs on the same PostgreSQL, for docs/benchmarks.md.
//
// Run through bench/graphile-worker.sh (which installs the packages and drops leftover schemas).
// Per run: migrate a fresh schema, enqueue N no-op jobs with addJobs (graphile_worker.add_jobs,
// batches of BATCH), then start ONE worker (run()) in its fastest documented configuration --
// concurrentJobs CONCURRENCY, localQueue.size LOCAL_QUEUE, completeJobBatchDelay and
// failJobBatchDelay 0, logger silenced -- and time from the run() call (worker start-up included,
// as PySaaS's is) until the task has run N times AND the jobs table is empty (graphile-worker
// deletes completed jobs, so the completions are committed). Result lines go to stdout, nothing
// else.
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { randomBytes } from "node:crypto";

const NODE_DIR = process.env.PYSAAS_BENCH_NODE;
if (!NODE_DIR) throw new Error("PYSAAS_BENCH_NODE is not set; run bench/graphile-worker.sh");
const req = createRequire(join(NODE_DIR, "package.json"));
// graphile-worker 0.18 is an ES module; load it from the cached install by absolute path.
const gw = await import(pathToFileURL(req.resolve("graphile-worker")).href);
const pg = req("pg");
const { version } = JSON.parse(
  readFileSync(join(NODE_DIR, "node_modules/graphile-worker/package.json"), "utf8"),
);
const LABEL = `graphile-worker ${version.split(".").slice(0, 2).join(".")}`;

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const N = Number(process.env.N ?? 20000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 24);
const LOCAL_QUEUE = Number(process.env.LOCAL_QUEUE ?? 500);
const BATCH = Number(process.env.BATCH ?? 1000);
const RUNS = Number(process.env.RUNS ?? 1);
const TIMEOUT_S = Number(process.env.TIMEOUT ?? 300);
const BASE = process.env.GW_SCHEMA_BASE ?? `gw_bench_${randomBytes(4).toString("hex")}`;

const logger = new gw.Logger(() => () => {});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmt = (n, s) => `${n} jobs in ${s.toFixed(2)} s = ${Math.round(n / s)} jobs/s`;

async function once(run) {
  const schema = `${BASE}_${run}`;
  const qSchema = pg.Client.prototype.escapeIdentifier(schema);
  const utils = await gw.makeWorkerUtils({ connectionString: DATABASE_URL, schema, logger });
  let runner, timer;
  try {
    await utils.migrate();

    const t0 = performance.now();
    for (let off = 0; off < N; off += BATCH) {
      const n = Math.min(BATCH, N - off);
      await utils.addJobs(Array.from({ length: n }, () => ({ identifier: "noop", payload: {} })));
    }
    const enqueueS = (performance.now() - t0) / 1000;
    console.log(`graphile-worker enqueue: ${fmt(N, enqueueS)} (addJobs, batches of ${BATCH})`);

    let ran = 0;
    let ok, fail;
    const allRan = new Promise((res, rej) => ((ok = res), (fail = rej)));
    timer = setTimeout(() => fail(new Error(`timed out after ${TIMEOUT_S} s (${ran}/${N} ran)`)), TIMEOUT_S * 1000);
    const events = new EventEmitter();
    events.on("job:error", ({ error }) => fail(error));
    const taskList = {
      noop: async () => {
        if (++ran === N) ok();
      },
    };

    const start = performance.now();
    runner = await gw.run({
      taskList,
      noHandleSignals: true,
      preset: {
        worker: {
          connectionString: DATABASE_URL,
          schema,
          logger,
          events,
          concurrentJobs: CONCURRENCY,
          maxPoolSize: Math.max(10, CONCURRENCY + 2), // the docs' recommendation
          localQueue: { size: LOCAL_QUEUE },
          completeJobBatchDelay: 0,
          failJobBatchDelay: 0,
        },
      },
    });
    await allRan;
    // Completions are batched; the drain ends when they are committed (no job rows left).
    for (;;) {
      const { rows } = await utils.withPgClient((c) =>
        c.query(`select count(*)::int as n from ${qSchema}._private_jobs`),
      );
      if (rows[0].n === 0) break;
      await sleep(5);
    }
    const drainS = (performance.now() - start) / 1000;
    console.log(
      `${LABEL} drain: ${fmt(N, drainS)} (concurrency ${CONCURRENCY}, localQueue ${LOCAL_QUEUE})`,
    );
  } finally {
    clearTimeout(timer);
    if (runner) await runner.stop().catch((e) => console.error(e));
    await utils
      .withPgClient((c) => c.query(`drop schema if exists ${qSchema} cascade`))
      .catch((e) => console.error(e));
    await utils.release();
  }
}

for (let run = 1; run <= RUNS; run++) await once(run);
