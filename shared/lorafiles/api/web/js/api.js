// The public HTTP API (docs/API.md, docs/openapi.json) and nothing else: every call carries the
// user's bearer token; errors are {"error": {"code", "message", "details"}}.
// The typed TypeScript client for the app (clients/ts) has the same operations.

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || (status ? `http_${status}` : "network");
    this.details = error.details ?? null;
  }
}

export function createApi({ baseUrl = "", getToken }) {
  const base = baseUrl.replace(/\/+$/, "");
  const enc = encodeURIComponent;

  async function request(method, path, { query, body, headers } = {}) {
    const url = new URL(base + path, window.location.href);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
    }
    const sent = { Accept: "application/json", ...(headers || {}) };
    const token = getToken();
    if (token) sent.Authorization = `Bearer ${token}`;
    let payload;
    if (body !== undefined) {
      sent["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(url, { method, headers: sent, body: payload });
    } catch (err) {
      throw new ApiError(0, { error: { code: "network", message: `the API could not be reached (${err.message})` } });
    }
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: { code: "bad_response", message: `HTTP ${resp.status}: not JSON` } };
    }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }

  return {
    listConversations: (query) => request("GET", "/conversations", { query }),
    validateSelection: (body) => request("POST", "/selections/validate", { body }),
    createTrainingFile: (body, idempotencyKey) =>
      request("POST", "/training-files", { body, headers: { "Idempotency-Key": idempotencyKey } }),
    addConversations: (fileId, body, idempotencyKey) =>
      request("POST", `/training-files/${enc(fileId)}/conversations`,
        { body, headers: { "Idempotency-Key": idempotencyKey } }),
    getJob: (jobId) => request("GET", `/jobs/${enc(jobId)}`),
    async listTrainingFiles() {
      // every page, should the route paginate (items + next_cursor)
      const items = [];
      let cursor;
      for (let page = 0; page < 100; page += 1) {
        const data = await request("GET", "/training-files", { query: { cursor } });
        items.push(...(data.items || []));
        cursor = data.next_cursor;
        if (!cursor) break;
      }
      return items;
    },
    getTrainingFile: (fileId) => request("GET", `/training-files/${enc(fileId)}`),
    getDownloadLink: (fileId, format, version) =>
      request("GET", `/training-files/${enc(fileId)}/download`, { query: { format, version } }),
    /** GET a signed download URL's JSON (no Authorization header: the URL is the credential). */
    async fetchSignedJson(url) {
      let resp;
      try {
        resp = await fetch(url, { headers: { Accept: "application/json" } });
      } catch (err) {
        throw new ApiError(0, { error: { code: "network", message: `the download could not be fetched (${err.message})` } });
      }
      if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
      return resp.json();
    },
  };
}

/** A random idempotency key (crypto.randomUUID needs a secure context: localhost is one). */
export function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The claims of a JWT, for display only (the API verifies it). */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}
