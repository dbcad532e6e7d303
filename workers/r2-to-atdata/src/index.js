// r2-to-atdata: a Cloudflare Queues consumer that forwards R2 event
// notifications for newly created `.tar` shards to atdata's ingest endpoint.
//
// Each queue message body is the R2 event notification JSON:
//   {account, bucket, object: {key, size, eTag}, action, eventTime, copySource?}
//
// Per message:
//   - not an object-creation action, or key not ending in ".tar" -> ack, nothing sent
//   - otherwise POST the body unchanged to ATDATA_INGEST_URL with a bearer token;
//     ack on 2xx, retry on anything else (non-2xx, network error, timeout).
// Messages of a batch are forwarded concurrently and settled individually.
//
// Configuration (env):
//   ATDATA_INGEST_URL    full URL of the ingest endpoint (ends in /ingest)  [required]
//   ATDATA_TOKEN         bearer token (a secret: `wrangler secret put`)     [required]
//   INGEST_TIMEOUT_MS    abort the POST after this many ms (default 10000)
//   RETRY_DELAY_SECONDS  if set, delay retried messages by this many seconds

const LOG_PREFIX = "r2-to-atdata";
const DEFAULT_TIMEOUT_MS = 10_000;

// R2 actions that mean "an object now exists at this key".
const CREATE_ACTIONS = new Set(["PutObject", "CopyObject", "CompleteMultipartUpload"]);

function log(fields) {
  console.log(`${LOG_PREFIX} ${JSON.stringify(fields)}`);
}

function positiveNumber(value, fallback) {
  if (value === undefined || value === null || value === "") return fallback;
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

function retryOptions(env) {
  const raw = env.RETRY_DELAY_SECONDS;
  if (raw === undefined || raw === null || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) return undefined;
  return { delaySeconds: Math.floor(n) };
}

// Message bodies from R2 notifications arrive as objects; tolerate a JSON
// string too (e.g. a message re-sent by hand with content type "text").
function parseEvent(body) {
  if (typeof body === "string") {
    try {
      return { event: JSON.parse(body), raw: body };
    } catch {
      return { event: null, raw: body };
    }
  }
  return { event: body, raw: JSON.stringify(body) };
}

function missingConfig(env) {
  const missing = [];
  if (!env.ATDATA_INGEST_URL) missing.push("ATDATA_INGEST_URL");
  if (!env.ATDATA_TOKEN) missing.push("ATDATA_TOKEN");
  return missing;
}

async function forward(msg, env, timeoutMs, retryOpts) {
  const { event, raw } = parseEvent(msg.body);
  const key = event?.object?.key;
  const action = event?.action;

  if (typeof key !== "string" || !key.endsWith(".tar")) {
    msg.ack();
    log({ key: key ?? null, action: action ?? null, status: "skipped", reason: "not a .tar key" });
    return;
  }
  if (!CREATE_ACTIONS.has(action)) {
    msg.ack();
    log({ key, action: action ?? null, status: "skipped", reason: "not an object-create action" });
    return;
  }

  const started = Date.now();
  try {
    const res = await fetch(env.ATDATA_INGEST_URL, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${env.ATDATA_TOKEN}`,
        "Content-Type": "application/json",
      },
      body: raw,
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Drain the body so the connection is released; keep a short snippet for the log.
    let detail = "";
    try {
      detail = (await res.text()).slice(0, 200);
    } catch {
      // The status line is what decides the outcome; a broken body is not fatal.
    }
    if (res.status >= 200 && res.status < 300) {
      msg.ack();
      log({ key, action, status: "acked", http: res.status, ms: Date.now() - started });
    } else {
      msg.retry(retryOpts);
      log({ key, action, status: "retried", http: res.status, ms: Date.now() - started, detail });
    }
  } catch (err) {
    msg.retry(retryOpts);
    const timedOut = err?.name === "TimeoutError" || err?.name === "AbortError";
    log({
      key,
      action,
      status: "retried",
      error: timedOut ? `timeout after ${timeoutMs} ms` : String(err?.message ?? err),
      ms: Date.now() - started,
    });
  }
}

export default {
  async queue(batch, env, ctx) {
    const retryOpts = retryOptions(env);

    const missing = missingConfig(env);
    if (missing.length > 0) {
      console.error(
        `${LOG_PREFIX} configuration error: missing ${missing.join(" and ")}; ` +
          `retrying all ${batch.messages.length} message(s) of queue ${batch.queue}` +
          (missing.includes("ATDATA_TOKEN") ? " (set it with `wrangler secret put ATDATA_TOKEN`)" : ""),
      );
      for (const msg of batch.messages) {
        msg.retry(retryOpts);
        const { event } = parseEvent(msg.body);
        log({ key: event?.object?.key ?? null, status: "retried", error: `missing ${missing.join(", ")}` });
      }
      return;
    }

    const timeoutMs = positiveNumber(env.INGEST_TIMEOUT_MS, DEFAULT_TIMEOUT_MS);
    await Promise.allSettled(batch.messages.map((msg) => forward(msg, env, timeoutMs, retryOpts)));
  },
};
