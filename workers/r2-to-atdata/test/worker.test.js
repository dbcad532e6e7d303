// Runs the Worker in the real Workers runtime (workerd, via miniflare) and
// delivers queue batches to it. The ingest endpoint is a real HTTP server on
// 127.0.0.1 that records every request and answers as each test tells it.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SCRIPT = fileURLToPath(new URL("../src/index.js", import.meta.url));
const WRANGLER = readFileSync(new URL("../wrangler.toml", import.meta.url), "utf8");

// Take the compatibility date and queue name from wrangler.toml so the tests
// exercise the configuration that is deployed.
const COMPAT_DATE = WRANGLER.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
const QUEUE = WRANGLER.match(/^queue\s*=\s*"([^"]+)"/m)[1];
const TOKEN = "test-token-0123456789";
const TIMEOUT_MS = 300;

// ---------------------------------------------------------------- ingest server

class IngestServer {
  constructor() {
    this.requests = [];
    this.answer = () => 200; // (event) => status code | "hang" (or a Promise of one)
    this.server = http.createServer((req, res) => this.#handle(req, res));
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}/ingest`;
  }

  reset() {
    this.requests = [];
    this.answer = () => 200;
  }

  #handle(req, res) {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const record = { method: req.method, path: req.url, headers: req.headers, body, clientAborted: false };
      this.requests.push(record);
      let event = null;
      try {
        event = JSON.parse(body);
      } catch {}
      Promise.resolve(this.answer(event)).then((answer) => this.#reply(res, record, answer));
    });
  }

  #reply(res, record, answer) {
    if (answer === "hang") {
      // Never answer; note when the client gives up on us.
      res.on("close", () => {
        if (!res.writableEnded) record.clientAborted = true;
      });
      return;
    }
    if (res.destroyed) return; // the client already gave up
    res.writeHead(answer, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: answer }));
  }

  async close() {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

// ---------------------------------------------------------------- helpers

function r2Event(key, action = "PutObject", extra = {}) {
  return {
    account: "3f4b7e3dcab231cbfdaa90a6a28bd548",
    bucket: "atdata-shards",
    object: { key, size: 1048576, eTag: `etag-${key.length}` },
    action,
    eventTime: "2026-04-01T12:00:00.000Z",
    ...extra,
  };
}

let nextId = 0;
function messages(...bodies) {
  return bodies.map((body) => ({ id: `msg-${++nextId}`, timestamp: new Date(), attempts: 1, body }));
}

function acked(result) {
  assert.equal(result.outcome, "ok");
  assert.equal(result.ackAll, false, "worker must not ackAll");
  assert.equal(result.retryBatch.retry, false, "worker must not retryAll");
  return [...result.explicitAcks].sort();
}

function retried(result) {
  return result.retryMessages.map((m) => m.msgId).sort();
}

function ids(msgs) {
  return msgs.map((m) => m.id).sort();
}

async function closedPortUrl() {
  const s = http.createServer();
  await new Promise((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = s.address().port;
  await new Promise((resolve) => s.close(resolve));
  return `http://127.0.0.1:${port}/ingest`;
}

// ---------------------------------------------------------------- fixture

const ingest = new IngestServer();
let mf;
let logs = "";

async function worker(name = "r2-to-atdata") {
  return mf.getWorker(name);
}

async function deliver(msgs, name) {
  return (await worker(name)).queue(QUEUE, msgs);
}

async function waitFor(predicate, what, ms = 3000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting: ${what}`);
}

// Worker stdout arrives asynchronously; wait until every expected piece shows up.
async function waitForLogs(needles, ms = 3000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (needles.every((n) => logs.includes(n))) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`log lines not seen: ${needles.filter((n) => !logs.includes(n)).join(" | ")}\n--- logs ---\n${logs}`);
}

before(async () => {
  await ingest.start();
  const deadUrl = await closedPortUrl();
  const base = { modules: true, scriptPath: SCRIPT, modulesRoot: ROOT, compatibilityDate: COMPAT_DATE };
  mf = new Miniflare({
    handleRuntimeStdio(stdout, stderr) {
      stdout.on("data", (d) => (logs += d));
      stderr.on("data", (d) => (logs += d));
    },
    workers: [
      {
        ...base,
        name: "r2-to-atdata",
        bindings: { ATDATA_INGEST_URL: ingest.url, ATDATA_TOKEN: TOKEN, INGEST_TIMEOUT_MS: String(TIMEOUT_MS) },
        queueConsumers: {
          [QUEUE]: { maxBatchSize: 10, maxBatchTimeout: 5, maxRetries: 5, deadLetterQueue: `${QUEUE}-dlq` },
        },
      },
      {
        ...base,
        name: "no-token",
        bindings: { ATDATA_INGEST_URL: ingest.url, INGEST_TIMEOUT_MS: String(TIMEOUT_MS) },
      },
      {
        ...base,
        name: "no-config",
        bindings: {},
      },
      {
        ...base,
        name: "retry-delay",
        bindings: {
          ATDATA_INGEST_URL: ingest.url,
          ATDATA_TOKEN: TOKEN,
          INGEST_TIMEOUT_MS: String(TIMEOUT_MS),
          RETRY_DELAY_SECONDS: "30",
        },
      },
      {
        ...base,
        name: "patient",
        bindings: { ATDATA_INGEST_URL: ingest.url, ATDATA_TOKEN: TOKEN, INGEST_TIMEOUT_MS: "2000" },
      },
      {
        ...base,
        name: "dead-endpoint",
        bindings: { ATDATA_INGEST_URL: deadUrl, ATDATA_TOKEN: TOKEN, INGEST_TIMEOUT_MS: "5000" },
      },
    ],
  });
  await mf.ready;
});

after(async () => {
  await mf?.dispose();
  await ingest.close();
});

beforeEach(() => {
  ingest.reset();
});

// ---------------------------------------------------------------- tests

// A per-test timeout turns "the worker never returns" into that test failing
// instead of the whole run hanging.
const it = (name, fn) => test(name, { timeout: 10_000 }, fn);

describe("r2-to-atdata worker", () => {
  it("forwards a .tar PutObject event once, with bearer token and exact body, and acks it", async () => {
    const event = r2Event("incoming/train-000001.tar");
    const msgs = messages(event);
    const result = await deliver(msgs);

    assert.deepEqual(acked(result), ids(msgs));
    assert.deepEqual(retried(result), []);
    assert.equal(ingest.requests.length, 1, "exactly one POST");
    const [req] = ingest.requests;
    assert.equal(req.method, "POST");
    assert.equal(req.path, "/ingest");
    assert.equal(req.headers.authorization, `Bearer ${TOKEN}`);
    assert.match(req.headers["content-type"], /^application\/json\b/);
    assert.equal(req.body, JSON.stringify(event), "body is forwarded unchanged");
    assert.deepEqual(JSON.parse(req.body), event);
    await waitForLogs(['"key":"incoming/train-000001.tar"', '"status":"acked"']);
  });

  it("CopyObject and CompleteMultipartUpload count as creations; any 2xx acks", async () => {
    const copy = r2Event("incoming/copied.tar", "CopyObject", {
      copySource: { bucket: "other-bucket", object: "src/copied.tar" },
    });
    const multipart = r2Event("incoming/big.tar", "CompleteMultipartUpload");
    ingest.answer = (ev) => (ev.action === "CopyObject" ? 202 : 204);
    const msgs = messages(copy, multipart);
    const result = await deliver(msgs);

    assert.deepEqual(acked(result), ids(msgs));
    assert.deepEqual(retried(result), []);
    const bodies = ingest.requests.map((r) => r.body).sort();
    assert.deepEqual(bodies, [JSON.stringify(copy), JSON.stringify(multipart)].sort());
  });

  it("a 500 answer retries the message and does not ack it", async () => {
    ingest.answer = () => 500;
    const msgs = messages(r2Event("incoming/train-000002.tar"));
    const result = await deliver(msgs);

    assert.equal(ingest.requests.length, 1);
    assert.deepEqual(acked(result), []);
    assert.deepEqual(retried(result), ids(msgs));
    assert.equal(result.retryMessages[0].delaySeconds, undefined);
    await waitForLogs(['"key":"incoming/train-000002.tar"', '"status":"retried","http":500']);
  });

  it("a 4xx answer (e.g. bad token) is retried too", async () => {
    ingest.answer = () => 401;
    const msgs = messages(r2Event("incoming/train-000003.tar"));
    const result = await deliver(msgs);

    assert.equal(ingest.requests.length, 1);
    assert.deepEqual(acked(result), []);
    assert.deepEqual(retried(result), ids(msgs));
  });

  it("a hanging ingest server: the fetch is aborted after INGEST_TIMEOUT_MS and the message retried", async () => {
    ingest.answer = () => "hang";
    const msgs = messages(r2Event("incoming/slow.tar"));
    const t0 = Date.now();
    const result = await deliver(msgs);
    const elapsed = Date.now() - t0;

    assert.equal(ingest.requests.length, 1, "the request did reach the server");
    assert.deepEqual(acked(result), []);
    assert.deepEqual(retried(result), ids(msgs));
    assert.ok(elapsed >= TIMEOUT_MS - 50, `returned after ${elapsed} ms, before the ${TIMEOUT_MS} ms timeout`);
    assert.ok(elapsed < TIMEOUT_MS + 4000, `took ${elapsed} ms: timeout not applied`);
    await waitForLogs(['"key":"incoming/slow.tar"', `timeout after ${TIMEOUT_MS} ms`]);
    // The abort reaches the server: the connection is dropped, not left open.
    await waitFor(() => ingest.requests[0].clientAborted, "server saw the client abort");
  });

  it("a refused connection is retried", async () => {
    const msgs = messages(r2Event("incoming/train-000004.tar"));
    const result = await deliver(msgs, "dead-endpoint");

    assert.deepEqual(acked(result), []);
    assert.deepEqual(retried(result), ids(msgs));
  });

  it("non-.tar keys and non-creation actions are acked and never sent", async () => {
    const msgs = messages(
      r2Event("incoming/train.manifest.json"),
      r2Event("incoming/train.manifest.parquet"),
      r2Event("incoming/notes.txt"),
      r2Event("incoming/archive.tar.gz"),
      r2Event("incoming/gone.tar", "DeleteObject"),
      r2Event("incoming/expired.tar", "LifecycleDeletion"),
      { not: "an r2 event" },
    );
    const result = await deliver(msgs);

    assert.equal(ingest.requests.length, 0, "nothing is forwarded");
    assert.deepEqual(acked(result), ids(msgs));
    assert.deepEqual(retried(result), []);
    await waitForLogs([
      '"key":"incoming/train.manifest.json"',
      '"key":"incoming/train.manifest.parquet"',
      '"key":"incoming/notes.txt"',
      '"key":"incoming/gone.tar","action":"DeleteObject","status":"skipped"',
      '"key":"incoming/expired.tar","action":"LifecycleDeletion","status":"skipped"',
    ]);
  });

  it("a mixed batch: each message gets its own outcome", async () => {
    ingest.answer = (ev) => {
      const key = ev.object.key;
      if (key.includes("fail")) return 500;
      if (key.includes("hang")) return "hang";
      return 200;
    };
    const [ok1, fail, skipJson, hang, ok2, del] = messages(
      r2Event("incoming/ok-1.tar"),
      r2Event("incoming/fail.tar"),
      r2Event("incoming/ok-1.manifest.json"),
      r2Event("incoming/hang.tar"),
      r2Event("incoming/ok-2.tar", "CompleteMultipartUpload"),
      r2Event("incoming/ok-3.tar", "DeleteObject"),
    );
    const t0 = Date.now();
    const result = await deliver([ok1, fail, skipJson, hang, ok2, del]);
    const elapsed = Date.now() - t0;

    assert.deepEqual(acked(result), ids([ok1, skipJson, ok2, del]));
    assert.deepEqual(retried(result), ids([fail, hang]));
    const sentKeys = ingest.requests.map((r) => JSON.parse(r.body).object.key).sort();
    assert.deepEqual(sentKeys, ["incoming/fail.tar", "incoming/hang.tar", "incoming/ok-1.tar", "incoming/ok-2.tar"]);
    // Sent concurrently: the whole batch takes about one timeout, not one per message.
    assert.ok(elapsed < 2 * TIMEOUT_MS + 1000, `batch took ${elapsed} ms`);
    for (const key of ["ok-1.tar", "fail.tar", "ok-1.manifest.json", "hang.tar", "ok-2.tar", "ok-3.tar"]) {
      await waitForLogs([`"key":"incoming/${key}"`]);
    }
  });

  it("messages of a batch are forwarded concurrently", async () => {
    // The server holds every request until all three are in flight at once,
    // which only happens if the worker does not wait for one before sending the next.
    const N = 3;
    let release;
    const allArrived = new Promise((resolve) => (release = resolve));
    ingest.answer = () => {
      if (ingest.requests.length === N) release();
      return allArrived.then(() => 200);
    };
    const msgs = messages(...Array.from({ length: N }, (_, i) => r2Event(`incoming/par-${i}.tar`)));
    const result = await deliver(msgs, "patient");

    assert.equal(ingest.requests.length, N);
    assert.deepEqual(acked(result), ids(msgs));
    assert.deepEqual(retried(result), []);
  });

  it("a JSON string body is forwarded unchanged", async () => {
    const raw = JSON.stringify(r2Event("incoming/as-text.tar"));
    const msgs = messages(raw);
    const result = await deliver(msgs);

    assert.deepEqual(acked(result), ids(msgs));
    assert.equal(ingest.requests.length, 1);
    assert.equal(ingest.requests[0].body, raw);
  });

  it("RETRY_DELAY_SECONDS is passed to msg.retry", async () => {
    ingest.answer = () => 503;
    const msgs = messages(r2Event("incoming/train-000005.tar"));
    const result = await deliver(msgs, "retry-delay");

    assert.deepEqual(acked(result), []);
    assert.deepEqual(result.retryMessages, [{ msgId: msgs[0].id, delaySeconds: 30 }]);
  });

  it("missing ATDATA_TOKEN: every message retried, nothing sent, error names the variable", async () => {
    const msgs = messages(r2Event("incoming/train-000006.tar"), r2Event("incoming/notes.txt"));
    const result = await deliver(msgs, "no-token");

    assert.equal(ingest.requests.length, 0, "nothing is sent without a token");
    assert.deepEqual(acked(result), []);
    assert.deepEqual(retried(result), ids(msgs));
    await waitForLogs(["configuration error: missing ATDATA_TOKEN", "wrangler secret put ATDATA_TOKEN"]);
  });

  it("missing ATDATA_INGEST_URL and ATDATA_TOKEN: every message retried, both named", async () => {
    const msgs = messages(r2Event("incoming/train-000007.tar"));
    const result = await deliver(msgs, "no-config");

    assert.equal(ingest.requests.length, 0);
    assert.deepEqual(acked(result), []);
    assert.deepEqual(retried(result), ids(msgs));
    await waitForLogs(["configuration error: missing ATDATA_INGEST_URL and ATDATA_TOKEN"]);
  });
});
