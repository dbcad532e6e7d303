// End-to-end helper: run this Worker in workerd (miniflare) and deliver queue
// batches to it on request, so a test can drive a real atdata server through
// the real Worker. Not used by the Worker itself or by `npm test`.
//
//   node scripts/deliver.mjs --ingest-url http://127.0.0.1:8000/ingest --token $ATDATA_TOKEN
//
// Protocol (JSON lines): after start-up it prints {"ready": true}. Each stdin line
//   {"id": 1, "messages": [<R2 event>, ...], "worker": "main" | "wrong-token"}
// delivers one batch (the messages' bodies) and prints
//   {"id": 1, "outcome": "ok", "acked": [0, 2], "retried": [1], "ms": 12}
// with message indexes. The "wrong-token" Worker sends a bearer token the server
// does not accept. EOF on stdin disposes of miniflare and exits.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Miniflare } from "miniflare";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SCRIPT = fileURLToPath(new URL("../src/index.js", import.meta.url));
const WRANGLER = readFileSync(new URL("../wrangler.toml", import.meta.url), "utf8");
const COMPAT_DATE = WRANGLER.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
const QUEUE = WRANGLER.match(/^queue\s*=\s*"([^"]+)"/m)[1];

const { values } = parseArgs({
  options: {
    "ingest-url": { type: "string" },
    token: { type: "string" },
    "timeout-ms": { type: "string", default: "10000" },
  },
});
if (!values["ingest-url"] || !values.token) {
  console.error("usage: node scripts/deliver.mjs --ingest-url URL --token TOKEN [--timeout-ms MS]");
  process.exit(2);
}

const base = { modules: true, scriptPath: SCRIPT, modulesRoot: ROOT, compatibilityDate: COMPAT_DATE };
const bindings = { ATDATA_INGEST_URL: values["ingest-url"], INGEST_TIMEOUT_MS: values["timeout-ms"] };
const mf = new Miniflare({
  handleRuntimeStdio(stdout, stderr) {
    // Worker log lines go to our stderr, keeping stdout for the protocol.
    stdout.on("data", (d) => process.stderr.write(d));
    stderr.on("data", (d) => process.stderr.write(d));
  },
  workers: [
    {
      ...base,
      name: "main",
      bindings: { ...bindings, ATDATA_TOKEN: values.token },
      queueConsumers: { [QUEUE]: { maxBatchSize: 10, maxBatchTimeout: 5, maxRetries: 5 } },
    },
    { ...base, name: "wrong-token", bindings: { ...bindings, ATDATA_TOKEN: "not-the-token-0000000000" } },
  ],
});
await mf.ready;
const workers = { main: await mf.getWorker("main"), "wrong-token": await mf.getWorker("wrong-token") };
process.stdout.write(JSON.stringify({ ready: true }) + "\n");

let nextId = 0;
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    process.stdout.write(JSON.stringify({ error: `bad request line: ${err.message}` }) + "\n");
    continue;
  }
  const messages = request.messages.map((body) => ({
    id: `msg-${++nextId}`,
    timestamp: new Date(),
    attempts: 1,
    body,
  }));
  const index = new Map(messages.map((m, i) => [m.id, i]));
  const started = Date.now();
  try {
    const result = await workers[request.worker ?? "main"].queue(QUEUE, messages);
    const acked = [...result.explicitAcks].map((id) => index.get(id)).sort((a, b) => a - b);
    const retried = result.retryMessages.map((m) => index.get(m.msgId)).sort((a, b) => a - b);
    process.stdout.write(
      JSON.stringify({ id: request.id, outcome: result.outcome, acked, retried, ms: Date.now() - started }) + "\n",
    );
  } catch (err) {
    process.stdout.write(JSON.stringify({ id: request.id, error: String(err?.message ?? err) }) + "\n");
  }
}
await mf.dispose();
