// Conversations view: server-side filters/sort/pages over GET /conversations, a selection of up to
// 80, the create/add control (POST /selections/validate before anything is submitted), the job.
import { ApiError, newIdempotencyKey } from "./api.js";
import { fmt, h, replace } from "./dom.js";

export const MAX_SELECTION = 80; // lorafiles.domain.rules.MAX_SELECTION
export const NAME_MAX = 255; // lorafiles.domain.rules.NAME_MAX
const NEW = "__new__";
const FILTERS = [
  ["batch_id", "Batch"], ["persona_key", "Persona"], ["emotional_arc_key", "Emotional arc"],
  ["topic_key", "Topic"], ["enrichment_status", "Enrichment status"],
];
const SORTS = [
  ["created_at", "Created"], ["batch_id", "Batch"], ["persona_key", "Persona"],
  ["emotional_arc_key", "Emotional arc"], ["topic_key", "Topic"], ["enrichment_status", "Enrichment status"],
];
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Kept while the user switches views: filters, page, selection, target, the running job.
const state = {
  filters: { batch_id: "", persona_key: "", emotional_arc_key: "", topic_key: "", enrichment_status: "", eligible: "" },
  sort: "created_at",
  order: "desc",
  limit: 25,
  offset: 0,
  page: null,
  files: [],
  facets: null,
  selection: new Map(), // conversation_id -> item (in the order selected)
  target: NEW,
  name: "",
  description: "",
  validation: { seq: 0, intent: null, report: null, error: null },
  idem: null, // {intent, key}: one idempotency key per intent, so a double click starts one job
  submitting: false,
  job: null,
  jobError: null,
};

/** The name rules of the API: pydantic FileName (1–255 characters, no NUL) + domain check_file_name
 * (not blank, at most 255 after trimming) + name_taken (unique per user ignoring case). */
export function nameProblem(name, files) {
  const trimmed = name.trim();
  if (!trimmed) return "name must not be empty";
  if (name.includes("\u0000")) return "must not contain NUL characters";
  if ([...name].length > NAME_MAX) return `name is longer than ${NAME_MAX} characters`;
  const key = trimmed.toLowerCase();
  const clash = files.find((f) => f.name.trim().toLowerCase() === key);
  if (clash) return `you already have a training file named “${clash.name}”`;
  return null;
}

export function mountConversations(root, app) {
  const { api } = app;
  let alive = true;
  let validateTimer = null;
  let jobTimer = null;
  document.title = "Conversations · LoRA Training JSON Files";

  // ------------------------------------------------------------------ skeleton
  const filterInputs = {};
  const datalists = {};
  const filterFields = FILTERS.map(([key, label]) => {
    const id = `filter-${key}`;
    datalists[key] = h("datalist", { id: `${id}-options` });
    filterInputs[key] = h("input", {
      id, name: key, type: "search", list: `${id}-options`, value: state.filters[key], autocomplete: "off",
      spellcheck: "false", placeholder: "any",
    });
    return h("div", { class: "field" }, h("label", { for: id }, label), filterInputs[key], datalists[key]);
  });
  const eligibleSelect = h("select", { id: "filter-eligible", name: "eligible" },
    h("option", { value: "" }, "any"), h("option", { value: "true" }, "eligible only"),
    h("option", { value: "false" }, "ineligible only"));
  eligibleSelect.value = state.filters.eligible;
  const sortSelect = h("select", { id: "sort" }, SORTS.map(([v, l]) => h("option", { value: v }, l)));
  sortSelect.value = state.sort;
  const orderSelect = h("select", { id: "order" }, h("option", { value: "desc" }, "descending"),
    h("option", { value: "asc" }, "ascending"));
  orderSelect.value = state.order;
  const limitSelect = h("select", { id: "limit" }, [10, 25, 50, 100, 200].map((n) => h("option", { value: n }, n)));
  limitSelect.value = String(state.limit);
  const filterError = h("p", { id: "filter-error", class: "error", role: "alert" });

  const filterForm = h("form", { id: "filters", class: "filters", "aria-describedby": "filter-error", onsubmit: applyFilters },
    filterFields,
    h("div", { class: "field" }, h("label", { for: "filter-eligible" }, "Eligibility"), eligibleSelect),
    h("div", { class: "field" }, h("label", { for: "sort" }, "Sort by"), sortSelect),
    h("div", { class: "field" }, h("label", { for: "order" }, "Order"), orderSelect),
    h("div", { class: "field" }, h("label", { for: "limit" }, "Per page"), limitSelect),
    h("div", { class: "buttons" }, h("button", { type: "submit", id: "apply-filters" }, "Apply filters"),
      h("button", { type: "button", id: "reset-filters", onclick: resetFilters }, "Reset")),
    filterError);

  const summary = h("p", { id: "conv-summary", "aria-live": "polite" }, "Loading…");
  const selectAll = h("input", { type: "checkbox", id: "select-page", onchange: togglePage });
  const tbody = h("tbody", { id: "conv-rows" });
  const table = h("table", { id: "conv-table", class: "rows" },
    h("caption", { class: "visually-hidden" }, "Conversations matching the filters"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col", class: "pick" }, selectAll,
        h("label", { for: "select-page", class: "visually-hidden" }, "Select every eligible conversation on this page")),
      ["Conversation", "Batch", "Persona · arc · topic", "Quality · turns", "Selectable?", "In files"]
        .map((t) => h("th", { scope: "col" }, t)))),
    tbody);
  const prev = h("button", { type: "button", id: "prev-page", onclick: () => turn(-1) }, "Previous page");
  const next = h("button", { type: "button", id: "next-page", onclick: () => turn(1) }, "Next page");
  const pageInfo = h("span", { id: "page-info" });

  const count = h("p", { id: "selection-count", class: "count", "aria-live": "polite", tabindex: -1 });
  const selList = h("ul", { id: "selection-list", class: "chips" });
  const clearButton = h("button", { type: "button", id: "clear-selection", onclick: clearSelection }, "Clear selection");
  const targetSelect = h("select", { id: "target", onchange: onTarget });
  const nameInput = h("input", {
    id: "file-name", type: "text", autocomplete: "off", value: state.name, "aria-describedby": "file-name-help file-name-error",
    oninput: () => { state.name = nameInput.value; checkName(); scheduleValidate(); },
  });
  const nameError = h("p", { id: "file-name-error", class: "error" });
  const descInput = h("textarea", {
    id: "file-description", rows: 2, maxlength: 10000, oninput: () => { state.description = descInput.value; },
  });
  descInput.value = state.description;
  const newFields = h("div", { id: "new-file-fields" },
    h("div", { class: "field" }, h("label", { for: "file-name" }, "Name of the new training file"), nameInput,
      h("p", { id: "file-name-help", class: "help" }, `1–${NAME_MAX} characters, unique among your files (ignoring case).`),
      nameError),
    h("div", { class: "field" }, h("label", { for: "file-description" }, "Description (optional)"), descInput));
  const validation = h("div", { id: "validation", class: "validation", "aria-live": "polite" });
  const submitButton = h("button", { type: "submit", id: "submit-job", class: "primary" }, "Create training file");
  const targetForm = h("form", { id: "target-form", onsubmit: submit },
    h("div", { class: "field" }, h("label", { for: "target" }, "Put the selection in"), targetSelect),
    newFields, validation, submitButton);

  const jobBar = h("progress", { id: "job-progress", max: 1, value: 0, "aria-labelledby": "job-h" });
  const jobText = h("p", { id: "job-text", "aria-live": "polite" });
  const jobResult = h("div", { id: "job-result" });
  const jobPanel = h("section", { id: "job", class: "job", hidden: true, "aria-labelledby": "job-h" },
    h("h3", { id: "job-h" }, "Job progress"), jobBar, jobText, jobResult);

  replace(root, h("div", { class: "layout" },
    h("section", { class: "panel main", "aria-labelledby": "conv-h" },
      h("h2", { id: "conv-h" }, "Conversations"),
      filterForm, summary,
      h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Conversations table" }, table),
      h("nav", { class: "pager", "aria-label": "Pages of conversations" }, prev, pageInfo, next),
      h("p", { class: "sel-jump" }, h("a", { href: "#sel-h", id: "sel-jump", onclick: jumpToSelection }, "Selection"))),
    h("aside", { class: "panel side", "aria-labelledby": "sel-h" },
      h("h2", { id: "sel-h" }, "Selection"), count, selList, clearButton,
      h("h3", {}, "Training file"), targetForm, jobPanel)));

  function jumpToSelection(event) {
    event.preventDefault(); // not a route: scroll to the selection panel and focus its counter
    count.scrollIntoView({ block: "start" });
    count.focus({ preventScroll: true });
  }

  // ------------------------------------------------------------------ loading
  async function load() {
    const query = { ...state.filters, sort: state.sort, order: state.order, limit: state.limit, offset: state.offset };
    summary.textContent = "Loading…";
    try {
      const page = await api.listConversations(query);
      if (!alive) return;
      state.page = page;
      state.files = page.training_files || [];
      // the offset went past the end (filters changed meanwhile): back to the first page
      if (!page.items.length && page.total && state.offset) { state.offset = 0; return load(); }
      renderTargets();
      renderRows();
      renderSelection();
      scheduleValidate(0);
    } catch (err) {
      if (!alive) return;
      handleError(err, summary);
    }
  }

  async function loadFacets() {
    // values to suggest in the filter inputs, from the first 200 conversations (the API has no facet route)
    if (!state.facets) {
      try {
        const page = await api.listConversations({ limit: 200, sort: "created_at", order: "desc" });
        state.facets = {};
        for (const [key] of FILTERS) {
          const counts = new Map();
          for (const item of page.items) if (item[key]) counts.set(item[key], (counts.get(item[key]) || 0) + 1);
          state.facets[key] = [...counts.entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
        }
      } catch {
        return;
      }
    }
    if (!alive) return;
    for (const [key] of FILTERS) {
      replace(datalists[key], (state.facets[key] || []).map(([value, n]) =>
        h("option", { value }, `${n} conversation${n === 1 ? "" : "s"} in the first 200`)));
    }
  }

  function handleError(err, where) {
    if (err instanceof ApiError && err.status === 401) app.unauthorized(err);
    replace(where, h("span", { class: "error" }, `Error ${err.code}: ${err.message}`));
  }

  // ------------------------------------------------------------------ filters and pages
  function applyFilters(event) {
    event.preventDefault();
    const batch = filterInputs.batch_id.value.trim();
    if (batch && !UUID_RE.test(batch)) {
      filterError.textContent = "A batch is a UUID (pick one from the suggestions).";
      filterInputs.batch_id.setAttribute("aria-invalid", "true");
      filterInputs.batch_id.focus();
      return;
    }
    filterError.textContent = "";
    filterInputs.batch_id.removeAttribute("aria-invalid");
    for (const [key] of FILTERS) state.filters[key] = filterInputs[key].value.trim();
    state.filters.eligible = eligibleSelect.value;
    state.sort = sortSelect.value;
    state.order = orderSelect.value;
    state.limit = Number(limitSelect.value);
    state.offset = 0;
    load();
  }

  function resetFilters() {
    for (const [key] of FILTERS) filterInputs[key].value = "";
    eligibleSelect.value = "";
    sortSelect.value = "created_at";
    orderSelect.value = "desc";
    filterForm.requestSubmit();
  }

  function turn(step) {
    state.offset = Math.max(0, state.offset + step * state.limit);
    load();
  }

  // ------------------------------------------------------------------ rows
  function problemsById() {
    const out = new Map();
    for (const p of state.validation.report?.problems || []) {
      if (!p.conversation_id) continue;
      if (!out.has(p.conversation_id)) out.set(p.conversation_id, []);
      out.get(p.conversation_id).push(p);
    }
    return out;
  }

  function fileName(id) {
    return state.files.find((f) => f.id === id)?.name || fmt.short(id);
  }

  // Re-rendering replaces elements: give the focus back to the element of the same id (keyboard use).
  function keepFocus(render) {
    const focused = document.activeElement && root.contains(document.activeElement) ? document.activeElement.id : null;
    render();
    if (focused && document.activeElement?.id !== focused) document.getElementById(focused)?.focus();
  }

  function renderRows() {
    keepFocus(drawRows);
  }

  function drawRows() {
    const page = state.page;
    if (!page) return;
    const full = state.selection.size >= MAX_SELECTION;
    const blocked = problemsById();
    replace(tbody, page.items.map((c) => {
      const id = c.conversation_id;
      const picked = state.selection.has(id);
      const box = h("input", {
        type: "checkbox", id: `pick-${id}`, class: "pick-box", checked: picked, disabled: !picked && full,
        "aria-describedby": `why-${id}`, "data-conversation-id": id,
        onchange: (event) => toggle(c, event.target.checked),
      });
      const label = c.conversation_name || id;
      const problems = blocked.get(id) || [];
      const why = c.eligible
        ? h("span", { class: "ok" }, "Yes", h("span", { class: "help" }, ` (${c.enrichment_status})`))
        : h("span", { class: "no" }, "No: ", c.ineligible_reason || "not eligible");
      return h("tr", { class: [picked && "picked", problems.length && "blocked"], "data-conversation-id": id },
        h("td", { class: "pick" }, box, h("label", { for: `pick-${id}`, class: "visually-hidden" }, `Select ${label}`)),
        h("td", { "data-label": "Conversation" }, c.conversation_name
          ? [h("span", { class: "name" }, c.conversation_name), h("br"), h("code", { class: "id" }, id)]
          : h("code", { class: "id only" }, id)),
        h("td", { "data-label": "Batch" }, c.batch_id ? h("code", { title: c.batch_id }, fmt.short(c.batch_id)) : "–"),
        h("td", { "data-label": "Persona · arc · topic", class: "scaffold" },
          h("span", { title: "persona" }, c.persona_key || "–"), h("br"),
          h("span", { title: "emotional arc" }, c.emotional_arc_key || "–"), h("br"),
          h("span", { title: "topic" }, c.topic_key || "–")),
        h("td", { "data-label": "Quality · turns" }, `${fmt.num(c.quality_score, 1)} · ${fmt.int(c.turn_count)}`),
        h("td", { "data-label": "Selectable?", id: `why-${id}`, class: "why" }, why,
          problems.map((p) => h("span", { class: "blocking" }, h("br"), `Blocked: ${p.code}: ${p.message}`))),
        h("td", { "data-label": "In files" }, c.training_file_ids.length
          ? c.training_file_ids.map((f, i) => [i ? ", " : "", h("a", { href: `#/files/${f}` }, fileName(f))]) : "–"));
    }));
    const eligible = page.items.filter((c) => c.eligible);
    selectAll.checked = eligible.length > 0 && eligible.every((c) => state.selection.has(c.conversation_id));
    selectAll.disabled = !eligible.length;
    const first = page.total ? (page.offset ?? 0) + 1 : 0;
    const last = (page.offset ?? 0) + page.items.length;
    summary.textContent = page.total
      ? `${fmt.int(page.total)} conversation${page.total === 1 ? "" : "s"} match; showing ${first}–${last}.`
      : "No conversation matches these filters.";
    const pages = Math.max(1, Math.ceil(page.total / state.limit));
    pageInfo.textContent = `Page ${Math.floor(state.offset / state.limit) + 1} of ${pages}`;
    prev.disabled = state.offset === 0;
    next.disabled = last >= page.total;
  }

  // ------------------------------------------------------------------ selection
  function toggle(item, on) {
    if (on && state.selection.size >= MAX_SELECTION) {
      count.textContent = `At most ${MAX_SELECTION} conversations per training-file request.`;
      renderRows();
      return;
    }
    if (on) state.selection.set(item.conversation_id, item);
    else state.selection.delete(item.conversation_id);
    afterSelection();
  }

  function togglePage() {
    const eligible = state.page.items.filter((c) => c.eligible);
    if (selectAll.checked) {
      for (const c of eligible) {
        if (state.selection.size >= MAX_SELECTION) break;
        state.selection.set(c.conversation_id, c);
      }
    } else {
      for (const c of eligible) state.selection.delete(c.conversation_id);
    }
    afterSelection();
  }

  function clearSelection() {
    state.selection.clear();
    afterSelection();
  }

  function afterSelection() {
    renderRows();
    renderSelection();
    scheduleValidate();
  }

  function renderSelection() {
    const n = state.selection.size;
    count.textContent = `${n} of ${MAX_SELECTION} selected${n >= MAX_SELECTION ? " (the limit: deselect some to pick others)" : ""}.`;
    count.classList.toggle("full", n >= MAX_SELECTION);
    const jump = root.querySelector("#sel-jump");
    if (jump) jump.textContent = `${n} of ${MAX_SELECTION} selected — go to the selection`;
    replace(selList, [...state.selection.values()].map((c) => {
      const label = c.conversation_name || c.conversation_id;
      return h("li", { "data-conversation-id": c.conversation_id }, h("span", {}, label),
        h("button", {
          type: "button", class: "chip-remove", id: `unpick-${c.conversation_id}`,
          "aria-label": `Remove ${label} from the selection`,
          onclick: () => {
            const after = selList.querySelector(`[data-conversation-id="${CSS.escape(c.conversation_id)}"]`);
            const neighbour = (after?.nextElementSibling || after?.previousElementSibling)?.querySelector("button");
            toggle(c, false);
            (neighbour ? document.getElementById(neighbour.id) : clearButton.disabled ? count : clearButton)?.focus();
          },
        }, "×"));
    }));
    clearButton.disabled = n === 0;
  }

  // ------------------------------------------------------------------ target
  function renderTargets() {
    const options = [h("option", { value: NEW }, "Create new training file"),
      ...state.files.map((f) => h("option", { value: f.id },
        `${f.name} (${f.conversation_count} conversation${f.conversation_count === 1 ? "" : "s"}, ${f.status})`))];
    replace(targetSelect, options);
    if (state.target !== NEW && !state.files.some((f) => f.id === state.target)) state.target = NEW;
    targetSelect.value = state.target;
    newFields.hidden = state.target !== NEW;
    checkName();
    renderSubmit();
  }

  function onTarget() {
    state.target = targetSelect.value;
    newFields.hidden = state.target !== NEW;
    checkName();
    scheduleValidate(0);
  }

  function checkName() {
    if (state.target !== NEW) return null;
    const problem = state.name === "" ? null : nameProblem(state.name, state.files);
    nameError.textContent = problem || "";
    if (problem) nameInput.setAttribute("aria-invalid", "true");
    else nameInput.removeAttribute("aria-invalid");
    return state.name === "" ? "name must not be empty" : problem;
  }

  function intent() {
    return JSON.stringify({ ids: [...state.selection.keys()], target: state.target,
      name: state.target === NEW ? state.name.trim() : null });
  }

  function request() {
    const ids = [...state.selection.keys()];
    return state.target === NEW ? { conversation_ids: ids, name: state.name } : { conversation_ids: ids, file_id: state.target };
  }

  // ------------------------------------------------------------------ validation (POST /selections/validate)
  function scheduleValidate(delay = 300) {
    clearTimeout(validateTimer);
    state.validation.intent = null; // whatever was checked is no longer what is selected
    renderSubmit();
    validateTimer = setTimeout(() => validate(), delay);
  }

  async function validate() {
    const v = state.validation;
    const wanted = intent();
    v.seq += 1;
    const seq = v.seq;
    v.report = null;
    v.error = null;
    if (!state.selection.size) {
      replace(validation, h("p", { class: "help" }, `Select conversations (up to ${MAX_SELECTION}).`));
      renderRows();
      renderSubmit();
      return null;
    }
    const local = checkName();
    if (local) {
      replace(validation, h("p", { class: "error" }, `Name: ${local}.`));
      renderSubmit();
      return null;
    }
    replace(validation, h("p", { class: "help" }, "Checking the selection…"));
    try {
      const report = await api.validateSelection(request());
      if (!alive || seq !== v.seq) return null;
      v.report = report;
      v.intent = wanted;
    } catch (err) {
      if (!alive || seq !== v.seq) return null;
      v.error = err;
      if (err instanceof ApiError && err.status === 401) app.unauthorized(err);
    }
    renderValidation();
    renderRows();
    renderSubmit();
    return v.report;
  }

  function renderValidation() {
    const { report, error } = state.validation;
    if (error) {
      replace(validation, h("p", { class: "error" }, `The selection could not be checked: ${error.code}: ${error.message}`));
      return;
    }
    if (!report) return;
    if (report.ok) {
      const where = state.target === NEW ? `a new training file “${state.name.trim()}”` : `“${fileName(state.target)}”`;
      replace(validation, h("p", { class: "ok", id: "validation-ok" },
        `Ready: ${report.conversations} conversation${report.conversations === 1 ? "" : "s"} can go into ${where}.`));
      return;
    }
    const names = new Map([...state.selection.values()].map((c) => [c.conversation_id, c.conversation_name]));
    replace(validation,
      h("p", { class: "error" }, `Blocked: ${report.problems.length} problem${report.problems.length === 1 ? "" : "s"}. Nothing is submitted until ${report.problems.length === 1 ? "it is" : "they are"} resolved.`),
      h("ul", { id: "blocking-reasons", class: "problems" }, report.problems.map((p) => h("li", {
        "data-conversation-id": p.conversation_id || "", "data-code": p.code,
      }, p.conversation_id ? [h("strong", {}, names.get(p.conversation_id) || p.conversation_id), " "] : null,
      h("code", {}, p.code), `: ${p.message}`))));
  }

  function renderSubmit() {
    const v = state.validation;
    const ready = !state.submitting && state.selection.size > 0 && v.intent === intent() && v.report?.ok === true
      && !(state.job && !finished(state.job));
    submitButton.disabled = !ready;
    submitButton.textContent = state.target === NEW ? "Create training file" : `Add to “${fileName(state.target)}”`;
  }

  // ------------------------------------------------------------------ submit: one job per intent
  async function submit(event) {
    event.preventDefault();
    if (state.submitting) return; // a second click of a double click
    state.submitting = true;
    submitButton.disabled = true;
    const wanted = intent();
    if (!state.idem || state.idem.intent !== wanted) state.idem = { intent: wanted, key: newIdempotencyKey() };
    const key = state.idem.key;
    try {
      const report = await validate(); // always checked right before submitting
      if (!report || !report.ok || state.validation.intent !== wanted) return;
      const ids = [...state.selection.keys()];
      const accepted = state.target === NEW
        ? await api.createTrainingFile({ name: state.name.trim(), description: state.description.trim() || null,
          conversation_ids: ids }, key)
        : await api.addConversations(state.target, { conversation_ids: ids }, key);
      state.job = { id: accepted.job_id, kind: accepted.kind, status: accepted.status, file_id: accepted.file_id,
        progress: { batches_done: 0, batches_total: 0, conversations: ids.length } };
      state.jobError = null;
      replace(validation, h("p", { class: "help" }, "Submitted: the job is below."));
      renderJob();
      pollJob();
    } catch (err) {
      if (err instanceof ApiError && err.code === "selection_blocked") {
        state.validation.report = { ok: false, conversations: state.selection.size, problems: err.details || [] };
        renderValidation();
        renderRows();
      } else {
        if (err instanceof ApiError && err.status === 401) app.unauthorized(err);
        replace(validation, h("p", { class: "error" }, `Not started: ${err.code}: ${err.message}`));
      }
    } finally {
      state.submitting = false;
      renderSubmit();
    }
  }

  // ------------------------------------------------------------------ job (GET /jobs/{id})
  function finished(job) {
    return job.status === "succeeded" || job.status === "failed";
  }

  async function pollJob() {
    clearTimeout(jobTimer);
    if (!alive || !state.job) return;
    try {
      const job = await api.getJob(state.job.id);
      if (!alive) return;
      const was = state.job;
      state.job = job;
      renderJob();
      if (finished(job)) {
        if (!finished(was)) onJobDone(job);
        return;
      }
    } catch (err) {
      if (!alive) return;
      state.jobError = err;
      renderJob();
      if (err instanceof ApiError && err.status === 401) { app.unauthorized(err); return; }
    }
    jobTimer = setTimeout(pollJob, 1000);
  }

  function onJobDone(job) {
    if (job.status === "succeeded") {
      state.selection.clear();
      if (state.target === NEW && job.file_id) state.target = job.file_id; // its name is taken now: add to it next
      state.name = "";
      nameInput.value = "";
      state.description = "";
      descInput.value = "";
    }
    load();
  }

  function renderJob() {
    const job = state.job;
    if (!job) { jobPanel.hidden = true; return; }
    jobPanel.hidden = false;
    jobPanel.dataset.status = job.status;
    const p = job.progress || { batches_done: 0, batches_total: 0 };
    if (p.batches_total) {
      jobBar.max = p.batches_total;
      jobBar.value = p.batches_done;
    } else if (finished(job)) {
      jobBar.max = 1;
      jobBar.value = job.status === "succeeded" ? 1 : 0;
    } else {
      jobBar.removeAttribute("value"); // indeterminate until the batches are known
    }
    jobBar.dataset.done = p.batches_done;
    jobBar.dataset.total = p.batches_total;
    const what = job.kind === "add" ? "Adding" : job.kind === "create" ? "Creating" : "Regenerating";
    jobText.textContent = `${what} ${job.file_name ? `“${job.file_name}”` : "the training file"}: ${job.status}` +
      `${job.step ? ` (step ${job.step})` : ""}, batch ${p.batches_done} of ${p.batches_total || "?"} done` +
      ` — ${p.conversations} conversation${p.conversations === 1 ? "" : "s"}.` +
      (state.jobError ? ` (Polling failed: ${state.jobError.message}; retrying.)` : "");
    if (job.status === "succeeded") {
      replace(jobResult, h("p", { class: "ok", id: "job-done" }, `Published version ${job.published_version} of `,
        h("a", { href: `#/files/${job.file_id}`, id: "job-file-link" }, job.file_name || "the training file"), "."));
    } else if (job.status === "failed") {
      const e = job.error || { code: "failed", message: "the job failed" };
      replace(jobResult, h("div", { class: "error", id: "job-failed" },
        h("p", {}, h("code", {}, e.code), `: ${e.message}`, " The training file was left as it was."),
        Array.isArray(e.details) && e.details.length ? h("ul", { class: "problems" }, e.details.map(detailItem)) : null));
    } else {
      replace(jobResult);
    }
  }

  function detailItem(d) {
    if (!d || typeof d !== "object") return h("li", {}, String(d));
    const errors = Array.isArray(d.errors) ? d.errors : [d];
    return h("li", {}, h("strong", {}, d.conversation_id || "request"), ": ",
      errors.map((e, i) => [i ? "; " : "", h("code", {}, e.code || "error"), ` ${e.message || ""}`]));
  }

  // ------------------------------------------------------------------ start
  renderSelection();
  renderTargets();
  if (state.job) {
    renderJob();
    if (!finished(state.job)) pollJob();
  }
  load();
  loadFacets();

  return {
    unmount() {
      alive = false;
      clearTimeout(validateTimer);
      clearTimeout(jobTimer);
    },
  };
}
