// What the app's training-files page does (shown in README.md): check a selection, create a
// training file with an idempotency key, poll its job. Type-checked by tests/api/test_ts_client.py.
import { createLorafilesClient, unwrap, waitForJob } from "../src/index.ts";

declare const supabase: { auth: { getSession(): Promise<{ data: { session: { access_token: string } | null } }> } };

export async function createTrainingFile(name: string, conversationIds: string[]) {
  const api = createLorafilesClient({
    baseUrl: "http://127.0.0.1:8787", // the API Gateway URL in production
    getToken: async () => (await supabase.auth.getSession()).data.session?.access_token ?? "",
  });

  const check = unwrap(await api.POST("/selections/validate", { body: { name, conversation_ids: conversationIds } }));
  if (!check.ok) return { blocked: check.problems }; // one reason per conversation: show them, submit nothing

  const idempotencyKey = crypto.randomUUID(); // one per click: a double click starts one job
  const accepted = unwrap(await api.POST("/training-files", {
    params: { header: { "idempotency-key": idempotencyKey } },
    body: { name, conversation_ids: conversationIds },
  }));

  const job = await waitForJob(api, accepted.job_id, {
    onProgress: (j) => console.log(`batch ${j.progress.batches_done} of ${j.progress.batches_total}`),
  });
  if (job.status === "failed") return { failed: job.error }; // {code, message, details per conversation}

  const link = unwrap(await api.GET("/training-files/{file_id}/download", {
    params: { path: { file_id: job.file_id! }, query: { format: "jsonl" } },
  }));
  return { version: job.published_version, download: link.url };
}
