// Training files view: the list (GET /training-files), then one file (GET /training-files/{id}):
// versions, signed downloads of every format, the pre-flight report and its pictures.
import { ApiError } from "./api.js";
import { coverageHeatmaps, exclusionBars, histogram } from "./charts.js";
import { fmt, h, replace } from "./dom.js";

// every artifact of a version (lorafiles.usecases.common.ARTIFACTS), in the order shown
export const FORMATS = [
  ["json", "Full Training JSON"], ["jsonl", "JSONL"], ["openai", "OpenAI"], ["trl", "TRL"], ["axolotl", "Axolotl"],
  ["axolotl_config", "axolotl.yml"], ["sharegpt", "ShareGPT"], ["dataset_info", "dataset_info.json"],
  ["report", "report.json"], ["manifest", "manifest.json"],
];
const EXPORTS = ["openai", "trl", "axolotl", "sharegpt"];

function errorText(err) {
  return h("p", { class: "error", role: "alert" }, `Error ${err.code}: ${err.message}`);
}

export function mountFileList(root, app) {
  let alive = true;
  document.title = "Training files · LoRA Training JSON Files";
  const body = h("div", {}, h("p", {}, "Loading…"));
  replace(root, h("section", { class: "panel", "aria-labelledby": "files-h" }, h("h2", { id: "files-h" }, "Training files"), body));
  app.api.listTrainingFiles().then((files) => {
    if (!alive) return;
    if (!files.length) {
      replace(body, h("p", {}, "No training file yet. ", h("a", { href: "#/conversations" }, "Select conversations"), " to create one."));
      return;
    }
    replace(body, h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Training files table" },
      h("table", { id: "files-table", class: "rows" },
        h("caption", { class: "visually-hidden" }, "My training files, newest first"),
        h("thead", {}, h("tr", {}, ["Name", "Status", "Version", "Conversations", "Training pairs", "Turns", "Avg quality", "Updated"]
          .map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, files.map((f) => h("tr", { "data-file-id": f.id },
          h("td", { "data-label": "Name" }, h("a", { href: `#/files/${f.id}` }, f.name)),
          h("td", { "data-label": "Status" }, h("span", { class: `status ${f.status}` }, f.status)),
          h("td", { "data-label": "Version" }, `v${f.current_version}`),
          h("td", { "data-label": "Conversations" }, fmt.int(f.conversation_count)),
          h("td", { "data-label": "Training pairs" }, fmt.int(f.training_pair_count)),
          h("td", { "data-label": "Turns" }, fmt.int(f.total_turns)),
          h("td", { "data-label": "Avg quality" }, fmt.num(f.quality_summary?.avg_quality_score)),
          h("td", { "data-label": "Updated" }, fmt.date(f.updated_at))))))));
  }).catch((err) => {
    if (!alive) return;
    if (err instanceof ApiError && err.status === 401) app.unauthorized(err);
    replace(body, errorText(err));
  });
  return { unmount() { alive = false; } };
}

export function mountFileDetail(root, app, fileId) {
  const { api } = app;
  let alive = true;
  let timer = null;
  let resizeTimer = null;
  let file = null;
  let reportVersion = null;
  let report = null; // report.json of reportVersion
  let histFormat = "openai";
  let measure = 0; // 0: total tokens, 1: trainable tokens
  const status = h("p", { id: "download-status", class: "help", "aria-live": "polite" });
  const body = h("div", {}, h("p", {}, "Loading…"));
  replace(root, h("section", { class: "panel", "aria-labelledby": "file-h" },
    h("p", {}, h("a", { href: "#/files" }, "← All training files")),
    h("h2", { id: "file-h" }, "Training file"), body));

  async function load() {
    clearTimeout(timer);
    try {
      file = await api.getTrainingFile(fileId);
    } catch (err) {
      if (!alive) return;
      if (err instanceof ApiError && err.status === 401) app.unauthorized(err);
      replace(body, errorText(err));
      return;
    }
    if (!alive) return;
    const withExports = file.versions.filter((v) => Object.keys(v.artifacts || {}).length);
    if (!reportVersion || !file.versions.some((v) => v.version === reportVersion)) {
      reportVersion = withExports.length ? withExports[withExports.length - 1].version : null;
    }
    render();
    const job = file.current_job;
    if (job && (job.status === "queued" || job.status === "running")) timer = setTimeout(load, 1000);
    if (reportVersion && (!report || report.version !== reportVersion)) loadReport();
  }

  function render() {
    document.title = `${file.name} · LoRA Training JSON Files`;
    replace(root.querySelector("#file-h"), file.name);
    const q = file.quality_summary || {};
    const p = file.policy || {};
    const job = file.current_job;
    replace(body,
      h("dl", { class: "facts", id: "file-facts" },
        fact("Status", h("span", { class: `status ${file.status}` }, file.status)),
        fact("Current version", `v${file.current_version}`),
        fact("Conversations", fmt.int(file.conversation_count)),
        fact("Training pairs", fmt.int(file.training_pair_count)),
        fact("Turns", fmt.int(file.total_turns)),
        fact("Quality (avg / min / max)", `${fmt.num(q.avg_quality_score)} / ${fmt.num(q.min_quality_score)} / ${fmt.num(q.max_quality_score)}`),
        fact("Human reviewed", q.human_reviewed_count == null ? "–" : `${q.human_reviewed_count} (${fmt.num(q.human_reviewed_percentage, 1)}%)`),
        fact("Target model", p.target_model || file.target_model),
        fact("Policy", `max_length ${p.max_length ?? "–"}, over-length ${p.over_length ?? "–"}, min quality ${p.min_quality ?? "none"}, ` +
          `fix literal escapes ${p.fix_literal_escapes === false ? "no" : "yes"}`),
        fact("Batches", file.batch_ids.length ? file.batch_ids.map((b) => fmt.short(b)).join(", ") : "–"),
        file.stale_since ? fact("Stale since", fmt.date(file.stale_since)) : null,
        job ? fact("Latest job", `${job.kind} ${job.status}${job.step ? ` (${job.step})` : ""}, batch ${job.progress.batches_done} of ${job.progress.batches_total}` +
          (job.error ? ` — ${job.error.code}: ${job.error.message}` : "")) : null),
      h("h3", { id: "versions-h" }, "Versions and downloads"),
      h("p", { class: "help" }, "Each button asks the API for a short-lived signed link and downloads that artifact of that version."),
      status,
      h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-labelledby": "versions-h" },
        h("table", { id: "versions-table", class: "rows" },
          h("thead", {}, h("tr", {}, ["Version", "Created", "Conversations", "Pairs", "JSON / JSONL", "Downloads"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, [...file.versions].reverse().map(versionRow)))),
      h("section", { id: "report", "aria-labelledby": "report-h" }, h("h3", { id: "report-h" }, "Pre-flight report"), reportSection()),
      h("section", { id: "coverage", "aria-labelledby": "coverage-h" }, h("h3", { id: "coverage-h" }, "Coverage"),
        file.members.length ? coverageHeatmaps({ members: file.members, id: "coverage-heatmap" }) : h("p", {}, "No members.")));
  }

  function fact(term, value) {
    return h("div", {}, h("dt", {}, term), h("dd", {}, value));
  }

  function versionRow(v) {
    const available = Object.keys(v.artifacts || {}).length ? FORMATS.filter(([f]) => f in v.artifacts) : FORMATS.slice(0, 2);
    return h("tr", { "data-version": v.version },
      h("th", { scope: "row", "data-label": "Version" }, `v${v.version}`, v.version === file.current_version ? " (current)" : ""),
      h("td", { "data-label": "Created" }, fmt.date(v.created_at)),
      h("td", { "data-label": "Conversations" }, fmt.int(v.conversation_count)),
      h("td", { "data-label": "Pairs" }, fmt.int(v.training_pair_count)),
      h("td", { "data-label": "JSON / JSONL" }, `${fmt.bytes(v.json_size)} / ${fmt.bytes(v.jsonl_size)}`,
        h("br"), h("code", { title: `JSONL sha256 ${v.jsonl_sha256}` }, `sha256 ${v.jsonl_sha256.slice(0, 12)}…`)),
      h("td", { "data-label": "Downloads" }, h("ul", { class: "downloads" }, available.map(([f, label]) => h("li", {},
        h("button", {
          type: "button", class: "download", id: `download-v${v.version}-${f}`, "data-format": f, "data-version": v.version,
          "aria-label": `Download ${label} of version ${v.version}`, onclick: () => download(f, v.version),
        }, label))))));
  }

  async function download(format, version) {
    status.textContent = `Asking for a signed link to ${format} of v${version}…`;
    try {
      const link = await api.getDownloadLink(fileId, format, version);
      const a = h("a", { href: link.url, download: link.filename, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      status.textContent = `Downloading ${link.filename} (${fmt.bytes(link.size)}, sha256 ${link.sha256.slice(0, 12)}…; the link expires in ${link.expires_in} s).`;
      status.dataset.sha256 = link.sha256;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) app.unauthorized(err);
      status.textContent = `Download failed: ${err.code}: ${err.message}`;
    }
  }

  // ------------------------------------------------------------------ the pre-flight report
  async function loadReport() {
    const version = reportVersion;
    try {
      const link = await api.getDownloadLink(fileId, "report", version);
      const data = await api.fetchSignedJson(link.url);
      if (!alive || version !== reportVersion) return;
      report = data;
    } catch (err) {
      if (!alive) return;
      report = { version, error: err };
    }
    const section = root.querySelector("#report");
    if (section) replace(section, h("h3", { id: "report-h" }, "Pre-flight report"), reportSection());
  }

  function reportSection() {
    const versions = file.versions.filter((v) => Object.keys(v.artifacts || {}).length);
    if (!versions.length) return h("p", {}, "No version of this file has trainer exports (built before they existed): regenerate it.");
    const picker = h("select", {
      id: "report-version",
      onchange: () => { reportVersion = Number(picker.value); report = null; load(); },
    }, versions.map((v) => h("option", { value: v.version }, `v${v.version}`)));
    picker.value = String(reportVersion);
    const version = versions.find((v) => v.version === reportVersion) || versions[versions.length - 1];
    // the export summary of the version (GET /training-files/{id}: versions[].export_summary; `exports` for the current one)
    const summary = (Object.keys(version.export_summary || {}).length ? version.export_summary : null)
      || (reportVersion === file.current_version ? file.exports : null) || {};
    const policy = version.policy || file.policy || {};
    const parts = [h("div", { class: "field inline" }, h("label", { for: "report-version" }, "Report of version"), picker),
      exportTable(summary, policy), countsList("Checks that found something", summary.checks),
      countsList("Changed in the exports (training.json/jsonl are never altered)", summary.changes),
      summary.trims ? h("p", {}, `Trims: ${summary.trims.count} example${summary.trims.count === 1 ? "" : "s"} trimmed, ` +
        `${fmt.int(summary.trims.messages_removed)} messages and ${fmt.int(summary.trims.context_tokens_removed)} context tokens removed.`) : null];
    if (!report || report.version !== reportVersion) {
      parts.push(h("p", { class: "help", id: "report-loading" }, "Loading report.json through its signed link…"));
      return parts;
    }
    if (report.error) {
      parts.push(errorText(report.error));
      return parts;
    }
    const width = Math.min(root.clientWidth - 40, 900);
    const maxLength = report.policy?.max_length || policy.max_length;
    const examples = [];
    for (const c of report.conversations || []) {
      for (const ex of c.exports?.formats?.[histFormat]?.examples || []) examples.push(ex[measure]);
    }
    const formatPicker = h("select", { id: "hist-format", onchange: () => { histFormat = formatPicker.value; rerenderReport(); } },
      EXPORTS.map((f) => h("option", { value: f }, f)));
    formatPicker.value = histFormat;
    const measurePicker = h("select", { id: "hist-measure", onchange: () => { measure = Number(measurePicker.value); rerenderReport(); } },
      h("option", { value: 0 }, "total tokens"), h("option", { value: 1 }, "trainable tokens"));
    measurePicker.value = String(measure);
    parts.push(
      h("h4", {}, "Tokens per example"),
      h("div", { class: "chart-controls" },
        h("div", { class: "field inline" }, h("label", { for: "hist-format" }, "Export"), formatPicker),
        h("div", { class: "field inline" }, h("label", { for: "hist-measure" }, "Count"), measurePicker)),
      histogram({ values: examples, limit: maxLength, width, id: "token-histogram",
        label: `${measure ? "Trainable" : "Total"} tokens per ${histFormat} example (v${reportVersion}) against max_length` }),
      h("h4", {}, "Exclusions"),
      exclusionBars({ exclusions: report.summary?.exports?.exclusions || summary.exclusions, width, id: "exclusions-chart" }),
      exclusionList(report));
    return parts;
  }

  function rerenderReport() {
    const section = root.querySelector("#report");
    const focused = document.activeElement?.id;
    if (section) replace(section, h("h3", { id: "report-h" }, "Pre-flight report"), reportSection());
    if (focused) document.getElementById(focused)?.focus();
  }

  function exportTable(summary, policy) {
    const formats = summary.formats || {};
    const names = EXPORTS.filter((f) => formats[f]);
    if (!names.length) return h("p", {}, "No export figures.");
    return h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Export figures" },
      h("table", { id: "exports-table", class: "rows" },
        h("caption", {}, `Exports for ${policy.target_model || "the target model"}, max_length ${summary.max_length ?? policy.max_length}`),
        h("thead", {}, h("tr", {}, ["Export", "Lines", "Tokens min / p50 / p95 / max", "Over max_length", "Trainable tokens per epoch", "Excluded tokens"]
          .map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, names.map((f) => {
          const x = formats[f];
          const t = x.total_tokens || {};
          return h("tr", {}, h("th", { scope: "row", "data-label": "Export" }, f),
            h("td", { "data-label": "Lines" }, fmt.int(x.lines)),
            h("td", { "data-label": "Tokens" }, `${fmt.int(t.min)} / ${fmt.int(t.p50)} / ${fmt.int(t.p95)} / ${fmt.int(t.max)}`),
            h("td", { "data-label": "Over max_length" }, fmt.int(x.examples_over_max_length)),
            h("td", { "data-label": "Trainable/epoch" }, fmt.int(x.trainable_tokens_per_epoch)),
            h("td", { "data-label": "Excluded tokens" }, fmt.int(x.trainable_tokens_excluded)));
        }))));
  }

  function countsList(title, counts) {
    const found = Object.entries(counts || {}).filter(([, n]) => n);
    return h("div", {}, h("h4", {}, title), found.length
      ? h("ul", { class: "counts" }, found.map(([k, n]) => h("li", {}, h("code", {}, k), `: ${fmt.int(n)}`)))
      : h("p", { class: "help" }, "None."));
  }

  function exclusionList(rep) {
    const rows = [];
    for (const c of rep.conversations || []) {
      for (const e of c.exports?.exclusions || []) rows.push([c.conversation_id, e.pair_id, e.turn_number, e.reason, e.trainable_tokens]);
    }
    if (!rows.length) return null;
    return h("details", { class: "data-table" }, h("summary", {}, `Excluded turns, per conversation (${rows.length})`),
      h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Excluded turns" },
        h("table", {}, h("thead", {}, h("tr", {}, ["Conversation", "Pair", "Turn", "Reason", "Trainable tokens"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows.map((r) => h("tr", {}, r.map((v, i) => h("td", {}, i ? String(v ?? "–") : h("code", {}, v)))))))));
  }

  function onResize() {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (report && file) rerenderReport(); }, 200);
  }
  window.addEventListener("resize", onResize);
  load();
  return {
    unmount() {
      alive = false;
      clearTimeout(timer);
      window.removeEventListener("resize", onResize);
    },
  };
}
