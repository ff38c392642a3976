// Small DOM helpers: elements are built with textContent only (no HTML strings, so nothing the
// API returns can become markup), forms get a label for every field.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === undefined || v === null) {
      continue;
    }
    if (k === "onclick" || k === "onsubmit" || k === "onchange") {
      el.addEventListener(k.slice(2), v);
    } else if (k === "text") {
      el.textContent = v;
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) {
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  return el;
}

// A labelled field: <div class="field"><label for=id>…</label><input id=id …><small/></div>.
export function field(label, attrs, hint) {
  const input = h(attrs.tag || "input", { ...attrs, tag: undefined });
  const hintEl = hint ? h("small", { id: `${attrs.id}-hint`, text: hint }) : null;
  if (hintEl) {
    input.setAttribute("aria-describedby", hintEl.id);
  }
  return h("div", { class: "field" }, h("label", { for: attrs.id, text: label }), input, hintEl);
}

// The error area of a form (role=alert: read out when it changes).
export function alertBox(id) {
  return h("p", { id, class: "error", role: "alert", hidden: true });
}

export function showError(box, err) {
  box.textContent = err && err.message ? err.message : String(err);
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

export function clearError(box) {
  box.textContent = "";
  box.hidden = true;
}

// Disables a form's controls while `work` runs, then shows its error (if any) in `box`.
export async function busy(form, box, work) {
  const controls = Array.from(form.querySelectorAll("button, input, select, textarea"));
  controls.forEach((c) => {
    c.disabled = true;
  });
  clearError(box);
  form.setAttribute("aria-busy", "true");
  try {
    await work();
  } catch (e) {
    showError(box, e);
  } finally {
    controls.forEach((c) => {
      c.disabled = false;
    });
    form.removeAttribute("aria-busy");
  }
}
