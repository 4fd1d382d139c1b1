/**
 * Typed client of the lorafiles HTTP API (docs/API.md).
 *
 * `schema.d.ts` is generated from docs/openapi.json by openapi-typescript (`npm run generate`;
 * tests/api/test_ts_client.py fails when it is stale). Calls go through openapi-fetch, so paths,
 * parameters, bodies and responses are all checked by the compiler.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, operations, paths } from "./schema.d.ts";

export type { components, operations, paths };
type Schemas = components["schemas"];
export type ConversationPage = Schemas["ConversationPage"];
export type ConversationItem = Schemas["ConversationItem"];
export type SelectionReport = Schemas["SelectionReport"];
export type SelectionProblem = Schemas["SelectionProblem"];
export type CreateTrainingFileRequest = Schemas["CreateTrainingFileRequest"];
export type AddConversationsRequest = Schemas["AddConversationsRequest"];
export type JobAccepted = Schemas["JobAccepted"];
export type JobStatus = Schemas["JobStatus"];
export type TrainingFileSummary = Schemas["TrainingFileSummary"];
export type TrainingFileDetail = Schemas["TrainingFileDetail"];
export type DownloadLink = Schemas["DownloadLink"];
export type ArtifactFormat = DownloadLink["format"];
export type ErrorBody = Schemas["ErrorBody"];

export type LorafilesClient = Client<paths>;

export interface LorafilesClientOptions {
  /** The API: API Gateway's URL, or `http://127.0.0.1:8787` for `lorafiles serve`. */
  baseUrl: string;
  /** The signed-in user's Supabase access token (`supabase.auth.getSession()` → `session.access_token`). */
  getToken: () => string | Promise<string>;
  fetch?: typeof globalThis.fetch;
}

/** An openapi-fetch client that sends `Authorization: Bearer <token>` on every call. */
export function createLorafilesClient({ baseUrl, getToken, fetch }: LorafilesClientOptions): LorafilesClient {
  const client = createClient<paths>({ baseUrl, ...(fetch ? { fetch } : {}) });
  const auth: Middleware = {
    async onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${await getToken()}`);
      return request;
    },
  };
  client.use(auth);
  return client;
}

/** An error response of the API: `{"error": {"code", "message", "details"}}` (codes in docs/API.md). */
export class LorafilesApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: unknown;

  constructor(status: number, body: { error?: ErrorBody } | undefined) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code ?? `http_${status}`;
    this.details = body?.error?.details ?? null;
  }
}

/** The data of an openapi-fetch result, or a LorafilesApiError. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.data === undefined) {
    throw new LorafilesApiError(result.response.status, result.error as { error?: ErrorBody } | undefined);
  }
  return result.data;
}

export interface WaitOptions {
  intervalMs?: number;
  signal?: AbortSignal;
  onProgress?: (job: JobStatus) => void;
}

/** Poll `GET /jobs/{job_id}` until the job succeeded or failed (docs/API.md: every 1–2 s). */
export async function waitForJob(client: LorafilesClient, jobId: string, options: WaitOptions = {}): Promise<JobStatus> {
  const { intervalMs = 1000, signal, onProgress } = options;
  for (;;) {
    signal?.throwIfAborted();
    const job = unwrap(await client.GET("/jobs/{job_id}", { params: { path: { job_id: jobId } }, signal }));
    onProgress?.(job);
    if (job.status === "succeeded" || job.status === "failed") return job;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
