// Runs a throwaway AT Protocol network for atdata's tests: an in-memory PLC and a
// PDS on SQLite (@atproto/dev-env's TestNetworkNoAppView), on random free ports.
//
// Once ready it prints ONE line of JSON on stdout:
//   {"url": PDS URL, "plc": PLC URL, "blobLimit": bytes,
//    "accounts": [{"handle", "password", "did"}, ...], "ms": start-up time}
// and it exits when its stdin closes (the test process ended), so it never outlives
// the tests. Everything else goes to stderr.
//
// Usage: node pds.mjs [MODULES_DIR]
//   MODULES_DIR: the node_modules folder holding @atproto/dev-env
//   (default: ATDATA_PDS_MODULES, else ./node_modules beside this file).
// Environment: PDS_ACCOUNTS (comma-separated names, default "alice,bob"),
//   PDS_BLOB_LIMIT (bytes, default 5 MiB as on the public network).
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const modules = process.argv[2] || process.env.ATDATA_PDS_MODULES || path.join(here, 'node_modules')
const entry = path.join(modules, '@atproto', 'dev-env', 'dist', 'index.js')
const { TestNetworkNoAppView } = await import(pathToFileURL(entry).href)

const started = Date.now()
const blobLimit = Number(process.env.PDS_BLOB_LIMIT || 5 * 1024 * 1024)
const names = (process.env.PDS_ACCOUNTS || 'alice,bob').split(',').filter(Boolean)

const net = await TestNetworkNoAppView.create({ pds: { blobUploadLimit: blobLimit } })
const agent = net.pds.getAgent()
const accounts = []
for (const name of names) {
  const handle = `${name}.test`
  const password = `${name}-password`
  const res = await agent.com.atproto.server.createAccount({
    handle,
    email: `${name}@example.test`,
    password,
  })
  accounts.push({ handle, password, did: res.data.did })
}

let closing = false
async function shutdown(code) {
  if (closing) return
  closing = true
  try {
    await net.close()
  } catch (err) {
    console.error('closing the test network failed:', err)
  }
  process.exit(code)
}
process.stdin.on('end', () => shutdown(0))
process.stdin.on('error', () => shutdown(0))
process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))
process.stdin.resume()

process.stdout.write(
  JSON.stringify({ url: net.pds.url, plc: net.plc.url, blobLimit, accounts, ms: Date.now() - started }) + '\n',
)
