// Example job of the job world in JavaScript (componentize-js) using
// `fetch`: keeps a fresh copy of a JSON document (a rate table, a forecast,
// a feature-flag file) in the job's key-value store, where other runs of
// the job can read it without the network.
//
// GETs SOURCE_URL (granted in the declaration's `[network] allow`) with
// `If-None-Match` set to the ETag of the copy it holds. A 304 leaves the
// copy as it is; a 200 replaces it after checking the body is JSON; any
// other status, a failed request (including one the host denies) or a body
// that is not JSON fails the run and keeps the old copy. What it prints
// names the source by scheme://host:port only: a path or query can carry
// credentials.
//
// Build: npm install && npm run build

import { getEnvironment } from "wasi:cli/environment@0.2.3";
import { log } from "wasmcron:job/log@0.1.0";
import { get, set } from "wasmcron:job/kv@0.1.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export async function run(context) {
  const url = new Map(getEnvironment()).get("SOURCE_URL");
  if (!url) {
    throw "SOURCE_URL is not set: declare the document's URL in the job's env";
  }
  let origin;
  try {
    origin = new URL(url).origin;
  } catch {
    throw "SOURCE_URL is not a URL";
  }
  const stored = get("etag");
  const etag = stored && stored.length > 0 ? decoder.decode(stored) : undefined;
  const headers = { accept: "application/json", "user-agent": "wasmcron-js-cache" };
  if (etag) {
    headers["if-none-match"] = etag;
  }

  let response;
  try {
    response = await fetch(url, { headers });
  } catch (error) {
    throw `fetching ${origin} failed (is it granted in [network] allow?): ${error}`;
  }
  if (response.status === 304) {
    console.log(`${context.job}: ${origin} unchanged (etag ${etag})`);
    return;
  }
  if (!response.ok) {
    throw `${origin} answered HTTP ${response.status}; the cached copy is kept`;
  }
  const body = await response.text();
  let document;
  try {
    document = JSON.parse(body);
  } catch (error) {
    throw `${origin} did not answer JSON (${error.message}); the cached copy is kept`;
  }
  set("document", encoder.encode(body));
  // An empty ETag is kept when the source sends none: the next run asks unconditionally.
  set("etag", encoder.encode(response.headers.get("etag") ?? ""));
  const entries = Array.isArray(document) ? document.length : Object.keys(document ?? {}).length;
  log("info", "refreshed", [["origin", origin], ["bytes", String(body.length)]]);
  console.log(`${context.job}: cached ${entries} entries from ${origin} (etag ${response.headers.get("etag") ?? "none"})`);
}
