/*
 * Rule set builder (DESIGN §5.3) for sources.widgets.RuleSetWidget.
 *
 * The widget renders the JSON textarea inside a [data-rule-builder] container; the
 * textarea stays the form value. This script adds a simple row builder and keeps
 * the textarea in step with it, and an "Advanced (JSON)" mode that shows the
 * textarea itself. A rule set the builder cannot show exactly (nesting, extra
 * keys, unknown operators, invalid JSON) stays in advanced mode, so nothing is lost.
 *
 * Widgets added later (admin inlines, other scripts) are set up on the
 * "formset:added" event, or with window.leadbackRuleBuilder.init(container).
 */
"use strict";

(() => {
  const NESTING = "This rule set uses nesting; edit it as JSON.";
  let counter = 0;

  const parseList = (text, fallback) => {
    try {
      const value = JSON.parse(text || "[]");
      return Array.isArray(value) ? value.map(String) : fallback;
    } catch {
      return fallback;
    }
  };

  // Browsers with CSS field-sizing grow a text box with its content themselves.
  const sizesItself = window.CSS?.supports?.("field-sizing", "content") ?? false;

  const element = (tag, props = {}, children = []) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "role" || key.includes("-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children);
    return node;
  };

  const isScalar = (value) =>
    typeof value === "string" || (typeof value === "number" && Number.isFinite(value));

  // How an rhv looks in the value input; lists are shown comma-joined.
  const displayValue = (rhv) => {
    if (rhv === undefined) return "";
    if (Array.isArray(rhv)) return rhv.map(String).join(", ");
    return String(rhv);
  };

  /*
   * Read the textarea's text as builder state, or explain why it cannot be.
   * Returns {match, rules} or {error}. Only what the builder writes back
   * unchanged is accepted: {"op", "rules"} with one level of {lhv, op, rhv}.
   */
  const parseRuleSet = (text, operators) => {
    if (text.trim() === "") return { match: "and", rules: [] };
    let data;
    try {
      data = JSON.parse(text);
    } catch (error) {
      return { error: `Invalid JSON: ${error.message}` };
    }
    if (data === null) return { match: "and", rules: [] };
    const unshowable = (why) => ({
      error: `The simple editor cannot show this rule set (${why}); edit it as JSON.`,
    });
    if (typeof data !== "object" || Array.isArray(data)) {
      return unshowable("it is not a JSON object");
    }
    if (!["and", "or"].includes(data.op)) {
      return unshowable('"op" must be "and" or "or"');
    }
    if (!Array.isArray(data.rules)) return unshowable('"rules" must be a list');
    const extra = Object.keys(data).filter((key) => !["op", "rules"].includes(key));
    if (extra.includes("rule_set")) return { error: NESTING };
    if (extra.length) return unshowable(`it has "${extra[0]}"`);
    const rules = [];
    for (const [index, rule] of data.rules.entries()) {
      const where = `condition ${index + 1}`;
      if (rule === null || typeof rule !== "object" || Array.isArray(rule)) {
        return unshowable(`${where} is not an object`);
      }
      const keys = Object.keys(rule);
      if (keys.includes("rule_set") || keys.includes("rules")) return { error: NESTING };
      const unknown = keys.filter((key) => !["lhv", "op", "rhv"].includes(key));
      if (unknown.length) return unshowable(`${where} has "${unknown[0]}"`);
      if (typeof rule.lhv !== "string") {
        return unshowable(`${where} has no field name`);
      }
      if (!operators.includes(rule.op)) {
        return unshowable(`${where} has an unknown operator`);
      }
      const { rhv } = rule;
      const listOfScalars = Array.isArray(rhv) && rhv.every(isScalar);
      if (!(rhv === undefined || isScalar(rhv) || listOfScalars)) {
        return unshowable(`${where} has a value that is not text, a number or a list`);
      }
      rules.push({ lhv: rule.lhv, op: rule.op, rhv });
    }
    return { match: data.op, rules };
  };

  class RuleBuilder {
    constructor(container) {
      this.container = container;
      this.textarea = container.querySelector("textarea");
      this.operators = parseList(container.dataset.operators, []);
      this.unary = new Set(parseList(container.dataset.unary, []));
      this.variables = parseList(container.dataset.variables, []);
      if (!this.textarea.id) {
        counter += 1;
        this.textarea.id = `rule-builder-${counter}`;
      }
      this.id = this.textarea.id;
      this.rows = [];
      // The text this builder last wrote. When the textarea still holds it,
      // going back to simple mode keeps the rows as they are (unfinished rows,
      // untouched list values) instead of re-reading them.
      this.written = null;
      this.build();
      const state = parseRuleSet(this.textarea.value, this.operators);
      if (state.error) {
        this.setMode("advanced");
        this.showMessage(state.error);
      } else {
        this.load(state);
        this.written = this.textarea.value;
        this.setMode("simple");
      }
    }

    build() {
      const id = this.id;
      this.datalist = element("datalist", { id: `${id}_rb_variables` });
      for (const name of this.variables) {
        this.datalist.append(element("option", { value: name }));
      }
      this.match = element("select", {
        id: `${id}_rb_match`,
        class: "rb-match",
        "aria-label": "Match",
      });
      this.match.append(
        element("option", { value: "and", text: "all" }),
        element("option", { value: "or", text: "any" }),
      );
      this.match.addEventListener("change", () => this.write());
      this.list = element("div", { id: `${id}_rb_rows`, class: "rb-rows" });
      this.empty = element("p", {
        class: "rb-empty",
        text: "No conditions: every feedback passes.",
      });
      this.addButton = element("button", {
        type: "button",
        id: `${id}_rb_add`,
        class: "rb-add button",
        text: "Add condition",
      });
      this.addButton.addEventListener("click", () => {
        const row = this.addRow({ lhv: "", op: this.operators[0], rhv: "" });
        row.field.focus();
      });
      this.builder = element(
        "div",
        {
          id: `${id}_rb_builder`,
          class: "rb-builder",
          role: "group",
          "aria-label": "Conditions",
        },
        [
          element("p", { class: "rb-match-line" }, [
            "Match ",
            this.match,
            " of these conditions:",
          ]),
          this.list,
          this.empty,
          this.addButton,
          this.datalist,
        ],
      );
      this.toggle = element("button", {
        type: "button",
        id: `${id}_rb_toggle`,
        class: "rb-toggle",
        "aria-controls": this.textarea.id,
      });
      this.toggle.addEventListener("click", () => {
        if (this.mode === "simple") this.setMode("advanced");
        else this.toSimple();
      });
      this.message = element("p", {
        id: `${id}_rb_message`,
        class: "rb-message",
        role: "status",
        "aria-live": "polite",
      });
      this.message.hidden = true;
      const toolbar = element("div", { class: "rb-toolbar" }, [this.toggle]);
      this.container.insertBefore(toolbar, this.textarea);
      this.container.insertBefore(this.message, this.textarea);
      this.container.insertBefore(this.builder, this.textarea);
    }

    load(state) {
      this.match.value = state.match;
      for (const row of this.rows) row.node.remove();
      this.rows = [];
      for (const rule of state.rules) this.addRow(rule, { write: false });
      this.refresh();
    }

    addRow(rule, { write = true } = {}) {
      const row = { lhv: rule.lhv, op: rule.op, rhv: rule.rhv };
      // A stored unary rule may carry an rhv; it is kept until the operator changes.
      row.keepRhv = this.unary.has(rule.op) && rule.rhv !== undefined;
      row.field = element("input", {
        type: "text",
        class: "rb-field",
        value: rule.lhv,
        placeholder: "lead.state",
        autocomplete: "off",
        spellcheck: false,
        "aria-label": "Field",
      });
      row.field.setAttribute("list", this.datalist.id);
      row.field.addEventListener("input", () => {
        row.lhv = row.field.value;
        this.write();
      });
      row.opSelect = element("select", { class: "rb-op", "aria-label": "Operator" });
      for (const op of this.operators) {
        row.opSelect.append(element("option", { value: op, text: op }));
      }
      row.opSelect.value = rule.op;
      row.opSelect.addEventListener("change", () => {
        row.op = row.opSelect.value;
        row.keepRhv = false;
        row.value.hidden = this.unary.has(row.op);
        this.write();
      });
      // A text box that grows with its value, so a long list of states or
      // ZIP codes shows whole; Enter does not start a new line.
      row.value = element("textarea", {
        class: "rb-value",
        rows: 1,
        value: displayValue(rule.rhv),
        "aria-label": "Value",
      });
      row.value.hidden = this.unary.has(rule.op);
      const fit = () => {
        if (sizesItself) return;
        row.value.style.height = "auto";
        row.value.style.height = `${row.value.scrollHeight + 2}px`;
      };
      row.value.addEventListener("keydown", (event) => {
        if (event.key === "Enter") event.preventDefault();
      });
      // Once typed into, the value is the text as typed (a comma-separated
      // string is a list to the engine); until then a list or number stays as is.
      row.value.addEventListener("input", () => {
        row.rhv = row.value.value.replace(/[\r\n]+/g, " ");
        fit();
        this.write();
      });
      // Fit again whenever the box's width changes (layout, a phone turned).
      let width = 0;
      new ResizeObserver(() => {
        if (row.value.clientWidth !== width) {
          width = row.value.clientWidth;
          fit();
        }
      }).observe(row.value);
      row.remove = element("button", {
        type: "button",
        class: "rb-remove",
        text: "Remove",
        "aria-label": "Remove condition",
      });
      row.remove.addEventListener("click", () => {
        const index = this.rows.indexOf(row);
        this.rows.splice(index, 1);
        row.node.remove();
        this.refresh();
        this.write();
        const next = this.rows[Math.min(index, this.rows.length - 1)];
        (next ? next.remove : this.addButton).focus();
      });
      row.node = element("div", { class: "rb-row", role: "group" }, [
        row.field,
        row.opSelect,
        row.value,
        row.remove,
      ]);
      this.rows.push(row);
      this.list.append(row.node);
      this.refresh();
      if (write) this.write();
      return row;
    }

    // Row labels and the "no conditions" note follow the rows.
    refresh() {
      this.rows.forEach((row, index) => {
        row.node.setAttribute("aria-label", `Condition ${index + 1}`);
      });
      this.empty.hidden = this.rows.length > 0;
    }

    toJSON() {
      // A row with no field yet is unfinished: it is left out rather than
      // written as a rule the server would refuse.
      const rules = this.rows
        .filter((row) => row.lhv.trim() !== "")
        .map((row) => {
          const rule = { lhv: row.lhv, op: row.op };
          const binary = !this.unary.has(row.op);
          if ((binary || row.keepRhv) && row.rhv !== undefined) rule.rhv = row.rhv;
          return rule;
        });
      if (!rules.length) return "";
      return JSON.stringify({ op: this.match.value, rules }, null, 2);
    }

    write() {
      this.written = this.toJSON();
      this.textarea.value = this.written;
      this.textarea.dispatchEvent(new Event("change", { bubbles: true }));
    }

    toSimple() {
      if (this.textarea.value !== this.written) {
        const state = parseRuleSet(this.textarea.value, this.operators);
        if (state.error) {
          this.showMessage(state.error);
          this.textarea.focus();
          return;
        }
        this.load(state);
        this.written = this.textarea.value;
      }
      this.setMode("simple");
    }

    setMode(mode) {
      this.mode = mode;
      const simple = mode === "simple";
      this.container.dataset.mode = mode;
      this.builder.hidden = !simple;
      this.textarea.hidden = simple;
      this.toggle.textContent = simple ? "Advanced (JSON)" : "Simple";
      this.toggle.setAttribute("aria-expanded", String(!simple));
      if (simple) this.showMessage("");
    }

    showMessage(text) {
      this.message.textContent = text;
      this.message.hidden = !text;
    }
  }

  const init = (container) => {
    if (container.ruleBuilder || !container.querySelector("textarea")) {
      return container.ruleBuilder;
    }
    container.ruleBuilder = new RuleBuilder(container);
    return container.ruleBuilder;
  };

  const initAll = (root = document) => {
    for (const container of root.querySelectorAll("[data-rule-builder]")) {
      // The admin's hidden template row for new inline forms is cloned, not used.
      if (!container.closest(".empty-form")) init(container);
    }
  };

  window.leadbackRuleBuilder = { init, initAll };
  document.addEventListener("formset:added", (event) => initAll(event.target));
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => initAll());
  } else {
    initAll();
  }
})();
